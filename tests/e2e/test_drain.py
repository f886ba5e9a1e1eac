"""Graceful stop: a replica removed from mesh.yaml whose sidecar then gets SIGTERM
drains first (Envoy's listener drain, then stop), so requests in flight finish and
callers see no error. Real sidecars, real backends, bounded load on 127.0.0.1."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.helpers.harness import Mesh
from tests.helpers.traffic import BackgroundLoad


def test_a_removed_replica_drains_and_no_request_fails(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    mesh.add("b-1", "b")
    mesh.add("b-2", "b")
    mesh.start_control_plane()
    mesh.start_app("a-1")
    mesh.start_sidecar("a-1")
    for name in ("b-1", "b-2"):
        # Slow answers: requests are in flight at any moment, as under real load.
        mesh.start_app(name, delay_s=0.2)
    mesh.start_sidecar("b-1")
    leaving = mesh.start_sidecar("b-2", "--drain-seconds", "2")
    mesh.wait_synced()
    mesh.wait_for_route("a-1", "b")
    port = mesh.workloads["a-1"].outbound_port
    with BackgroundLoad(f"http://127.0.0.1:{port}/", {"Host": "b"}, threads=4) as load:
        time.sleep(1)
        del mesh.workloads["b-2"]
        mesh.write()  # callers drop b-2's endpoint
        started = time.monotonic()
        leaving.send_signal(signal.SIGTERM)  # as `sidemesh up` stops a removed replica
        leaving.wait(timeout=15)
        drained = time.monotonic() - started
        time.sleep(1)
    outcomes = load.answers()
    print(f"b-2 drained and stopped in {drained:.2f}s; requests: {dict(outcomes)}")
    assert leaving.returncode == 0
    assert 1.5 <= drained < 5
    assert set(outcomes) <= {"b-1", "b-2"}, outcomes
    assert outcomes["b-2"] > 0 and outcomes["b-1"] > 0
