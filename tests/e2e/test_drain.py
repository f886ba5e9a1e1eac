"""Graceful stop: a replica removed from mesh.yaml whose sidecar then gets SIGTERM
drains first (Envoy's listener drain, then stop), so requests in flight finish and
callers see no error. Real sidecars, real backends, bounded load on 127.0.0.1."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.helpers.harness import Mesh

LOAD_THREADS = 4
LOAD_MAX_REQUESTS = 5_000


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
    outcomes: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10, headers={"Host": "b"}) as client:
            while not stop.is_set() and sum(outcomes.values()) < LOAD_MAX_REQUESTS:
                try:
                    reply = client.get(f"http://127.0.0.1:{port}/")
                    who = (
                        reply.json()["workload"]
                        if reply.status_code == 200
                        else str(reply.status_code)
                    )
                except httpx.HTTPError as exc:
                    who = type(exc).__name__
                outcomes[who] += 1

    threads = [threading.Thread(target=load, daemon=True) for _ in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1)
        del mesh.workloads["b-2"]
        mesh.write()  # callers drop b-2's endpoint
        started = time.monotonic()
        leaving.send_signal(signal.SIGTERM)  # as `sidemesh up` stops a removed replica
        leaving.wait(timeout=15)
        drained = time.monotonic() - started
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    print(f"b-2 drained and stopped in {drained:.2f}s; requests: {dict(outcomes)}")
    assert leaving.returncode == 0
    assert 1.5 <= drained < 5
    assert set(outcomes) <= {"b-1", "b-2"}, outcomes
    assert outcomes["b-2"] > 0 and outcomes["b-1"] > 0
