"""Requests through two real sidecars; endpoints following mesh.yaml edits."""

from __future__ import annotations

import stat
import time
from collections import Counter
from pathlib import Path

from tests.helpers.harness import Mesh
from tests.helpers.net import listening_addresses, listening_ports_of
from tests.helpers.processes import descendants


def _start(mesh: Mesh) -> None:
    mesh.start_control_plane()
    for name in list(mesh.workloads):
        mesh.start_workload(name)
    mesh.wait_synced()


def test_request_reaches_b_through_both_sidecars(mesh: Mesh) -> None:
    _start(mesh)
    response = mesh.wait_for_route("a-1", "b")
    assert response.json()["workload"] == "b-1"
    assert response.headers["server"] == "envoy"
    for host in ("b", "b.default", "b:9080", "b.default.svc:9080"):
        reply = mesh.request("a-1", host, "/ratings/7")
        assert reply.status_code == 200, host
        answer = reply.json()
        assert answer["workload"] == "b-1" and answer["path"] == "/ratings/7", host
        assert answer["host"] == host
    # A host that is no service leaves the mesh (ALLOW_ANY), and this one does not
    # resolve: the caller's sidecar answers 503, no workload sees it.
    assert mesh.request("a-1", "nosuch").status_code == 503


def test_endpoints_follow_mesh_yaml(mesh: Mesh) -> None:
    _start(mesh)
    mesh.wait_for_route("a-1", "b")

    mesh.add("b-2", "b", version="v2")
    mesh.start_app("b-2")
    written = time.monotonic()
    mesh.write()
    mesh.start_sidecar("b-2")
    seen: Counter[str] = Counter()
    while seen["b-2"] == 0:
        assert time.monotonic() - written < 10, f"b-2 never answered: {seen}"
        reply = mesh.request("a-1", "b")
        assert reply.status_code == 200, reply.text
        seen[reply.json()["workload"]] += 1
    converged_s = time.monotonic() - written
    print(f"second b workload reached {converged_s:.3f}s after the edit")
    answers = Counter(mesh.request("a-1", "b").json()["workload"] for _ in range(20))
    assert set(answers) == {"b-1", "b-2"}, answers

    del mesh.workloads["b-2"]
    mesh.write()
    mesh.wait_synced(["a-1"])
    answers = Counter(mesh.request("a-1", "b").json()["workload"] for _ in range(30))
    assert answers == {"b-1": 30}
    # b-2 and its sidecar still run: the traffic stopped because the mesh said so.
    assert mesh.sidecars["b-2"].poll() is None


def test_envoy_admin_is_a_private_unix_socket_and_no_tcp_port(mesh: Mesh) -> None:
    """Envoy's admin can dump keys' certificates and change everything, with no
    authentication: it is a 0600 Unix socket in a 0700 directory, so another local user
    cannot reach it, and each Envoy listens on TCP only where mesh traffic comes in."""
    _start(mesh)
    for name, spec in mesh.workloads.items():
        socket_stat = spec.admin_socket.stat()
        assert stat.S_ISSOCK(socket_stat.st_mode)
        assert stat.S_IMODE(socket_stat.st_mode) == 0o600
        assert stat.S_IMODE(spec.admin_socket.parent.stat().st_mode) == 0o700
        assert spec.admin("/ready").text.strip() == "LIVE"
        envoy = next(pid for pid in descendants(mesh.sidecars[name].pid) if "envoy" in _comm(pid))
        assert listening_ports_of(envoy) == {
            ("127.0.0.1", spec.outbound_port),
            ("127.0.0.1", spec.port),
        }, name
        assert listening_addresses(spec.outbound_port) == {"127.0.0.1"}


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text()
