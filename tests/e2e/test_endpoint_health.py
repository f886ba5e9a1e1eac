"""Endpoint health as the callers' Envoys see it, with real sidecars on 127.0.0.1: an
endpoint ejected by outlier detection and one failing its active health check, in
Envoy's admin, in ``/v1/endpoints`` and in ``sidemesh status``; a stuck proxy is named
and holds up no one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.harness import Mesh
from tests.helpers.processes import descendants

EJECT_AFTER_3 = (
    "outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 60s, "
    "maxEjectionPercent: 50}"
)
CHECK_EVERY_SECOND = "healthCheck: {path: /healthz, interval: 1s, timeout: 500ms}"
STATUS_WIDTH = "220"
"""Wide enough that no cell of ``sidemesh status`` wraps."""


def _policy(spec: str) -> str:
    return textwrap.dedent(
        f"""
        apiVersion: sidemesh.io/v1alpha1
        kind: BackendPolicy
        metadata: {{name: b}}
        spec:
          targetRefs: [{{name: b}}]
          {spec}
        """
    )


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    """a-1 calls b: b-1 and b-2 answer, b-3's app answers every request 503."""
    m = Mesh(tmp_path)
    for name in ("b-1", "b-2", "b-3"):
        m.add(name, "b")
    m.add("a-1", "a")
    try:
        yield m
    finally:
        m.close()


def _start(mesh: Mesh, policy: str, b3_seen: list[dict[str, str]] | None = None) -> None:
    """b's sidecars first, each in sync before the caller starts: a caller's first
    health check of each b then finds its sidecar up. ``b3_seen`` collects the
    requests b-3's app gets."""
    mesh.policies = [_policy(policy)]
    for spec in mesh.workloads.values():
        spec.calls = ["b"]  # every sidecar holds b from the start, so checks it
    mesh.start_control_plane()
    for name in mesh.workloads:
        mesh.start_app(name, **({"status": 503, "seen": b3_seen} if name == "b-3" else {}))
    for name in ("b-1", "b-2", "b-3"):
        mesh.start_sidecar(name)
    mesh.wait_synced()
    mesh.start_sidecar("a-1")
    mesh.wait_synced()


def _workloads(mesh: Mesh) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in mesh.api("/v1/endpoints")["workloads"]}


def _wait_health(mesh: Mesh, wanted: dict[str, str], timeout: float = 20) -> dict[str, Any]:
    """Until ``/v1/endpoints`` says ``wanted`` (workload: health line) of each workload
    named; then its workloads."""
    deadline = time.monotonic() + timeout
    while True:
        workloads = _workloads(mesh)
        if all(workloads[name]["health"] == health for name, health in wanted.items()):
            return workloads
        if time.monotonic() > deadline:
            raise AssertionError(
                f"wanted {wanted}; /v1/endpoints says "
                f"{ {n: w['health'] for n, w in workloads.items()} }"
            )
        time.sleep(0.2)


def _status(mesh: Mesh, *args: str) -> str:
    """``sidemesh status``, run as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "sidemesh", "status", "--api", mesh.api_url, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": STATUS_WIDTH},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _row(table: str, workload: str) -> str:
    return next(line for line in table.splitlines() if f" {workload} " in line)


def _outlier_stats(mesh: Mesh, caller: str) -> dict[str, int]:
    stats = mesh.workloads[caller].admin("/stats?filter=outbound.9080..b.default.outlier").text
    return {
        line.split(": ")[0].rsplit(".", 1)[-1]: int(line.split(": ")[1])
        for line in stats.splitlines()
        if ": " in line
    }


def test_a_backend_ejected_by_one_caller_shows_in_envoys_stats_the_api_and_status(
    mesh: Mesh,
) -> None:
    _start(mesh, EJECT_AFTER_3)
    # Only a-1 calls b, so only a-1's Envoy sees b-3's 503s; each is retried on another
    # workload, and every request succeeds.
    for _ in range(30):
        assert mesh.request("a-1", "b").status_code == 200
    ejected = "ejected by 1 of 4 callers (outlier detection)"
    workloads = _wait_health(mesh, {"b-3": ejected, "b-1": "healthy", "b-2": "healthy"})

    assert _outlier_stats(mesh, "a-1")["ejections_active"] == 1
    # Every sidecar has b's endpoints (b's own too): each is a caller with its own view.
    assert workloads["b-3"]["callers"] == [
        "a-1.default",
        "b-1.default",
        "b-2.default",
        "b-3.default",
    ]
    assert workloads["b-3"]["ejectedBy"] == ["a-1.default"]
    assert workloads["b-3"]["failingHealthCheckBy"] == []
    endpoint = next(e for e in mesh.api("/v1/endpoints")["endpoints"] if e["workload"] == "b-3")
    assert (endpoint["service"], endpoint["port"], endpoint["endpointPort"]) == (
        "b",
        9080,
        mesh.workloads["b-3"].port,
    )
    assert endpoint["health"] == ejected

    table = _status(mesh)
    print(table)
    assert ejected in _row(table, "b-3")
    assert "healthy" in _row(table, "b-1") and "ejected" not in _row(table, "b-1")
    rows = {w["name"]: w for w in json.loads(_status(mesh, "-o", "json"))["workloads"]}
    assert rows["b-3"]["health"] == ejected
    assert rows["b-3"]["endpointHealth"]["ejectedBy"] == ["a-1.default"]
    assert rows["b-2"]["health"] == "healthy"


def test_a_backend_failing_its_health_check_shows_failing_at_every_caller_in_the_api_and_status(
    mesh: Mesh,
) -> None:
    _start(mesh, CHECK_EVERY_SECOND)
    # Every sidecar has b's endpoints, so every one checks b-3, and b-3 answers 503.
    failing = "failing health check at 4 of 4 callers"
    workloads = _wait_health(mesh, {"b-3": failing})
    assert workloads["b-3"]["failingHealthCheckBy"] == [
        "a-1.default",
        "b-1.default",
        "b-2.default",
        "b-3.default",
    ]
    assert "failed_active_hc" in mesh.workloads["a-1"].admin("/clusters").text

    table = _status(mesh)
    print(table)
    assert failing in _row(table, "b-3")
    rows = {w["name"]: w for w in json.loads(_status(mesh, "-o", "json"))["workloads"]}
    assert rows["b-3"]["health"] == failing
    assert len(rows["b-3"]["endpointHealth"]["failingHealthCheckBy"]) == 4


def test_backends_passing_their_health_check_show_healthy_beside_the_one_failing(
    mesh: Mesh,
) -> None:
    b3_seen: list[dict[str, str]] = []
    _start(mesh, CHECK_EVERY_SECOND, b3_seen)
    _wait_health(
        mesh,
        {"b-1": "healthy", "b-2": "healthy", "b-3": "failing health check at 4 of 4 callers"},
        timeout=10,
    )
    # Callers send b-3 nothing but its checks, with no retry needed to hide it.
    for i in range(30):
        assert mesh.request("a-1", "b", f"/call/{i}").status_code == 200
    assert [r["path"] for r in b3_seen if r["path"] != "/healthz"] == []
    table = _status(mesh)
    assert "healthy" in _row(table, "b-1") and "healthy" in _row(table, "b-2")


@contextmanager
def _stopped(pid: int) -> Iterator[None]:
    """A process that takes connections (the kernel queues them) and answers nothing."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _envoy_of(mesh: Mesh, workload: str) -> int:
    for pid in descendants(mesh.sidecars[workload].pid):
        if Path(f"/proc/{pid}/comm").read_text().strip() == "envoy":
            return pid
    raise AssertionError(f"no Envoy process under {workload}'s sidecar")


def test_a_stuck_proxy_is_named_in_the_api_and_status_and_holds_up_no_other(
    mesh: Mesh,
) -> None:
    _start(mesh, EJECT_AFTER_3)
    _wait_health(mesh, {"b-1": "healthy"})
    with _stopped(_envoy_of(mesh, "a-1")):
        started = time.monotonic()
        answer = mesh.api("/v1/endpoints")
        took = time.monotonic() - started
        table = _status(mesh)
    print(f"/v1/endpoints with a-1's Envoy stopped: {took:.2f}s\n{table}")
    assert took < 2.0, f"{took:.2f}s: one stuck proxy held up the answer"
    callers = {c["caller"]: c for c in answer["callers"]}
    admin = mesh.workloads["a-1"].admin_socket
    assert callers["a-1.default"]["answered"] is False
    assert callers["a-1.default"]["error"] == (
        f"no answer from its Envoy admin (unix:{admin}/clusters?format=json) within 1s"
    )
    assert all(callers[f"b-{i}.default"]["answered"] for i in (1, 2, 3))
    b1 = next(w for w in answer["workloads"] if w["name"] == "b-1")
    assert (b1["health"], len(b1["callers"])) == ("healthy", 3)
    assert "health counts only the callers whose Envoy answered; 1 did not:" in table
    assert f"a-1.default: no answer from its Envoy admin (unix:{admin}" in table
