"""Golden signals from real Envoy sidecars: a bounded load of known size through the
mesh is counted per edge and per service exactly once, a fault's aborts show in the
success rate and its delay in the latency percentiles, the service graph has exactly
the edges used (mTLS marked), ``/metrics`` exposes the counts for Prometheus, a proxy
that stops answering holds up no other's numbers, and ``sidemesh top`` draws live rows
in a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.test_replica_kill import _envoy_pid
from tests.helpers.harness import Mesh

SENT = 200


def _settled(mesh: Mesh, edge: tuple[str, str], total: int, timeout: float = 30) -> dict:
    """/v1/stats (10 m window) once the edge has counted ``total`` requests."""
    deadline = time.monotonic() + timeout
    while True:
        stats = mesh.api("/v1/stats?window=10m")
        found = [
            w
            for w in stats["workloads"]
            if (w["source"], w["destination"]) == edge and w["requests"] >= total
        ]
        latency_seen = found and found[0]["p50Ms"] is not None
        if latency_seen:
            return stats
        assert time.monotonic() < deadline, f"never counted {total} on {edge}: {stats}"
        time.sleep(0.5)


def test_a_known_load_is_counted_once_per_edge_with_failures_and_delays_shown(
    tmp_path: Path,
) -> None:
    """b-2 answers 500 after 0.3 s, b-1 at once: a load split between them shows both
    in the edge's success rate and p99, as the caller saw them."""
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    mesh.add("b-1", "b")
    mesh.add("b-2", "b")
    mesh.start_all({"b-2": {"status": 500, "delay_s": 0.3}})
    time.sleep(2.5)  # two scrapes: the count before the load is known
    base = mesh.api("/v1/stats?window=10m")
    before = next((w["requests"] for w in base["workloads"] if w["destination"] == "b.default"), 0)
    port = mesh.workloads["a-1"].outbound_port
    with httpx.Client(headers={"Host": "b"}, timeout=10) as client:
        statuses = [client.get(f"http://127.0.0.1:{port}/ok").status_code for _ in range(SENT)]
    failed = sum(1 for s in statuses if s >= 500)
    assert 0 < failed < SENT
    stats = _settled(mesh, ("a-1.default", "b.default"), before + SENT)
    (edge,) = [w for w in stats["workloads"] if w["destination"] == "b.default"]
    counted = edge["requests"] - before
    print(f"sent {SENT} ({failed} failed), counted {counted}: {edge}")
    assert abs(counted - SENT) <= SENT * 0.01
    assert edge["sourceService"] == "a.default"
    seen_failing = 1 - failed / SENT
    window = mesh.api("/v1/stats?window=10s")
    (recent,) = [w for w in window["workloads"] if w["destination"] == "b.default"]
    assert abs(recent["successRate"] - seen_failing) < 0.03, (recent, seen_failing)
    assert recent["p99Ms"] >= 250, recent

    graph = mesh.api("/v1/graph?window=10m")
    assert [(e["source"], e["destination"], e["mtls"]) for e in graph["edges"]] == [
        ("a.default", "b.default", True)
    ]
    metrics = httpx.get(f"{mesh.api_url}/metrics", timeout=5).text
    assert (
        'sidemesh_requests_total{destination_service="b.default",response_code_class="5xx",'
        'source_service="a.default",source_workload="a-1.default"}'
    ) in metrics
    # The control plane's own delivery: every proxy has applied the mesh version,
    # and the time from each push to its ACK is in a histogram.
    assert "sidemesh_mesh_version_applied_proxies 3.0" in metrics
    acks = next(
        line
        for line in metrics.splitlines()
        if line.startswith("sidemesh_xds_push_ack_seconds_count")
    )
    assert float(acks.split()[-1]) >= 12  # 4 types to each of 3 proxies


SIDEMESH = (sys.executable, "-m", "sidemesh")


def test_a_stuck_proxy_holds_up_no_other_and_top_draws_live_rows(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    mesh.add("c-1", "a")
    mesh.add("b-1", "b")
    mesh.start_all()
    for caller in ("a-1", "c-1"):
        for _ in range(20):
            mesh.request(caller, "b")
    # Freeze c-1's Envoy: its admin stops answering; a-1's numbers keep coming.
    envoy = _envoy_pid(mesh.sidecars["c-1"].pid)
    os.kill(envoy, signal.SIGSTOP)
    try:
        time.sleep(2.5)
        started = time.monotonic()
        for _ in range(30):
            mesh.request("a-1", "b")
        deadline = time.monotonic() + 20
        while True:
            stats = mesh.api("/v1/stats?window=10s")
            if "c-1.default" in stats["unanswered"] and any(
                w["source"] == "a-1.default" and w["requests"] >= 30 for w in stats["workloads"]
            ):
                break
            assert time.monotonic() < deadline, stats
            time.sleep(0.3)
        print(f"a-1's requests counted {time.monotonic() - started:.1f}s after they were sent")

        # sidemesh top in a pseudo-terminal: its screen holds a live row for b.
        leader, follower = pty.openpty()
        top = subprocess.Popen(
            [sys.executable, "-m", "sidemesh", "top", "--api", mesh.api_url, "--refresh", "0.5"],
            stdin=follower,
            stdout=follower,
            stderr=follower,
            env={**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm"},
        )
        os.close(follower)
        screen = b""
        deadline = time.monotonic() + 20
        try:
            while b"b.default" not in screen and time.monotonic() < deadline:
                ready, _, _ = select.select([leader], [], [], 0.5)
                if ready:
                    screen += os.read(leader, 65536)
        finally:
            top.terminate()
            top.wait(timeout=10)
            os.close(leader)
        text = screen.decode(errors="replace")
        assert "b.default" in text and "rps" in text, text

        # sidemesh stat: one snapshot, for scripts as JSON, filtered to one service.
        snapshot = subprocess.run(
            [*SIDEMESH, "stat", "--api", mesh.api_url, "--service", "b", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        data = json.loads(snapshot.stdout)
        assert [s["service"] for s in data["services"]] == ["b.default"], data
        assert data["services"][0]["requests"] >= 50, data
        assert {w["source"] for w in data["workloads"]} >= {"a-1.default"}, data
        edges = subprocess.run(
            [*SIDEMESH, "stat", "--api", mesh.api_url, "--edges"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env={**os.environ, "COLUMNS": "160"},
        )
        assert "a-1.default" in edges.stdout and "b.default" in edges.stdout, edges.stdout
    finally:
        os.kill(envoy, signal.SIGCONT)
