"""A replica's sidecar dies under load: its callers retry on the other replica and eject
the dead one after a few failed connects, and no request fails."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.helpers.harness import Mesh
from tests.helpers.net import backend
from tests.helpers.processes import alive, descendants

LOAD = Path(__file__).parent.parent / "helpers" / "apps" / "load.py"
RATE = 300
SECONDS = 4.0
KILL_AFTER_S = 1.5
APP_DELAY_S = 0.04
"""How long b's apps take to answer: at RATE, some ten requests are in flight, about
half of them through the sidecar that is killed."""
CLUSTER = "outbound|9080||b.default"
RETRY_STATS = (
    "upstream_rq_retry",
    "upstream_rq_retry_success",
    "upstream_rq_retry_overflow",
    "upstream_rq_retry_limit_exceeded",
    "upstream_cx_connect_fail",
    "upstream_rq_503",
    "outlier_detection.ejections_enforced_total",
    "outlier_detection.ejections_detected_consecutive_local_origin_failure",
)


def _envoy_pid(sidecar_pid: int) -> int:
    envoys = [
        pid
        for pid in descendants(sidecar_pid)
        if "envoy" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    ]
    assert len(envoys) == 1, f"Envoy of sidecar {sidecar_pid}: {envoys}"
    return envoys[0]


def _cluster_stats(mesh: Mesh, workload: str) -> dict[str, int]:
    text = (
        mesh.workloads[workload]
        .admin("/stats", {"filter": "retry|cx_connect_fail|rq_503|ejections"})
        .text
    )
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        prefix = f"cluster.{CLUSTER}."
        if name.startswith(prefix) and name[len(prefix) :] in RETRY_STATS:
            out[name[len(prefix) :]] = int(value)
    return out


def _wait_both_answer(mesh: Mesh) -> None:
    deadline = time.monotonic() + 20
    seen: Counter[str] = Counter()
    while set(seen) != {"b-1", "b-2"}:
        assert time.monotonic() < deadline, f"not both replicas answer: {seen}"
        reply = mesh.request("a-1", "b")
        if reply.status_code == 200:
            seen[reply.json()["workload"]] += 1


@pytest.mark.parametrize("xds_mode", ["delta"])
@pytest.mark.parametrize("victim", ["envoy", "sidecar"])
def test_killing_one_replicas_sidecar_under_load_fails_no_request(mesh: Mesh, victim: str) -> None:
    mesh.add("b-2", "b", version="v1")
    mesh.start_control_plane()
    mesh.start_workload("a-1")
    with ExitStack() as apps:
        for name in ("b-1", "b-2"):
            apps.enter_context(backend(name, mesh.workloads[name].app_port, APP_DELAY_S))
            mesh.start_sidecar(name)
        _run_and_kill(mesh, victim)


def _run_and_kill(mesh: Mesh, victim: str) -> None:
    mesh.wait_synced()
    _wait_both_answer(mesh)
    before = _cluster_stats(mesh, "a-1")

    load = subprocess.Popen(
        [
            sys.executable,
            str(LOAD),
            "--port",
            str(mesh.workloads["a-1"].outbound_port),
            "--host",
            "b",
            "--rate",
            str(RATE),
            "--seconds",
            str(SECONDS),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(KILL_AFTER_S)
        sidecar = mesh.sidecars["b-2"]
        envoy = _envoy_pid(sidecar.pid)
        # SIGKILL: no drain, no goodbye; whatever b-2's Envoy was carrying is cut off.
        # Killing the agent instead takes its Envoy down too (the kernel sends it
        # SIGTERM when its parent dies), as a crashed sidecar would.
        os.kill(envoy if victim == "envoy" else sidecar.pid, signal.SIGKILL)
        out, _ = load.communicate(timeout=SECONDS + 30)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    result = json.loads(out)
    stats = {k: v - before.get(k, 0) for k, v in _cluster_stats(mesh, "a-1").items()}
    print(f"\nkilled b-2's {victim} at {KILL_AFTER_S}s: {json.dumps(result)}")
    print(f"a-1's {CLUSTER} during the run: {stats}")
    deadline = time.monotonic() + 10
    while alive(envoy) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(envoy), "b-2's Envoy survived the kill"
    assert result["answeredBy"].get("b-2", 0) > 0, "b-2 served nothing before the kill"
    assert result["outcomes"] == {"200": result["sent"]}, result["examples"]
    assert stats.get("upstream_rq_retry_overflow", 0) == 0
    # The dead replica is ejected after a few failed connects, not retried around for
    # the rest of the run.
    assert stats.get("outlier_detection.ejections_enforced_total", 0) >= 1, stats
    assert stats.get("upstream_rq_retry", 0) < 50, stats
