"""Access logs that explain failures: each reason a request can fail for, triggered on
purpose through real Envoy sidecars, appears in the sidecar's log and reads in words
(``sidemesh logs`` renders them): no route, no connection to the app, an open circuit
breaker, an authorization policy's refusal."""

from __future__ import annotations

import json
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from sidemesh.cli.access_log import render
from tests.helpers.harness import Mesh


def _documents() -> list[str]:
    return [
        textwrap.dedent(
            """
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata: {name: b-only}
            spec:
              parentRefs: [{group: "", kind: Service, name: b, port: 9080}]
              rules: [{matches: [{path: {type: PathPrefix, value: /only}}], backendRefs: [{name: b, port: 9080}]}]
            """
        ),
        textwrap.dedent(
            """
            apiVersion: sidemesh.io/v1alpha1
            kind: BackendPolicy
            metadata: {name: slow}
            spec:
              targetRefs: [{name: slow}]
              connectionPool: {maxConnections: 1, maxPendingRequests: 1, maxRequests: 1}
            """
        ),
        textwrap.dedent(
            """
            apiVersion: sidemesh.io/v1alpha1
            kind: AuthorizationPolicy
            metadata: {name: no-secrets}
            spec:
              targetRefs: [{name: b}]
              action: DENY
              rules: [{to: [{operation: {paths: ["/only/secret"]}}]}]
            """
        ),
    ]


def _reasons(mesh: Mesh, workload: str) -> list[str]:
    lines = mesh.sidecar_log(workload).splitlines()
    return [render(line) for line in lines if '"log":"access"' in line.replace(" ", "")]


def _wait_for(mesh: Mesh, workload: str, words: str) -> str:
    deadline = time.monotonic() + 10
    while True:
        found = [r for r in _reasons(mesh, workload) if words in r]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, (words, _reasons(mesh, workload))
        time.sleep(0.2)


def test_every_failure_reason_is_logged_in_words(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    mesh.add("b-1", "b")
    mesh.add("d-1", "down")
    mesh.add("s-1", "slow")
    mesh.extra_services = [
        {"name": "down", "ports": [{"port": 7070}]},
        {"name": "slow", "ports": [{"port": 7171}]},
    ]
    mesh.policies = _documents()
    mesh.start_control_plane()
    for name in ("a-1", "b-1", "s-1"):  # d-1's app never starts
        mesh.start_app(name, **({"delay_s": 1.0} if name == "s-1" else {}))
    for name in mesh.workloads:
        mesh.start_sidecar(name)
    mesh.wait_synced()
    deadline = time.monotonic() + 20
    while mesh.request("a-1", "b", "/only/x").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)

    assert mesh.request("a-1", "b", "/elsewhere").status_code == 404
    line = _wait_for(mesh, "a-1", "no route for Host b")
    assert "404 GET b/elsewhere" in line

    assert mesh.request("a-1", "down", "/").status_code == 503
    line = _wait_for(mesh, "d-1", "no connection to its own app")
    assert "connection refused" in line.lower(), line

    port = mesh.workloads["a-1"].outbound_port
    with ThreadPoolExecutor(6) as pool:
        statuses = list(
            pool.map(
                lambda _: (
                    httpx.get(
                        f"http://127.0.0.1:{port}/", headers={"Host": "slow"}, timeout=10
                    ).status_code
                ),
                range(6),
            )
        )
    assert 503 in statuses, statuses
    _wait_for(mesh, "a-1", "circuit breaker of slow.default is open")

    assert mesh.request("a-1", "b", "/only/secret").status_code == 403
    line = _wait_for(mesh, "b-1", "refused by AuthorizationPolicy rule default/no-secrets/rule-0")
    assert "from spiffe://test.local/ns/default/sa/a" in line

    # The raw lines are JSON an operator's tools can read.
    raw = [
        json.loads(x[x.index("{") :])
        for x in mesh.sidecar_log("a-1").splitlines()
        if '"log":"access"' in x.replace(" ", "")
    ]
    assert {entry["responseFlags"] for entry in raw} >= {"NR", "UO"}


def test_a_telemetry_logs_every_request_of_its_service_with_its_trace(tmp_path: Path) -> None:
    """A Telemetry with ``accessLogging: {requests: All}`` on b: b's sidecar logs each
    request it serves, successful ones too, with the caller, the time taken and the
    trace ID (a's sidecar, which b's Telemetry does not cover, logs only failures)."""
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    mesh.add("b-1", "b")
    mesh.mesh_settings = {"tracing": {"randomSamplingPercentage": 100}}
    mesh.policies = [
        textwrap.dedent(
            """
            apiVersion: sidemesh.io/v1alpha1
            kind: Telemetry
            metadata: {name: b-requests}
            spec:
              targetRefs: [{name: b}]
              accessLogging: {requests: All}
            """
        )
    ]
    mesh.start_all()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    reply = httpx.get(
        f"http://127.0.0.1:{mesh.workloads['a-1'].outbound_port}/hello",
        headers={"Host": "b", "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        timeout=5,
    )
    assert reply.status_code == 200
    line = _wait_for(mesh, "b-1", "GET b/hello")
    assert "200 GET b/hello from spiffe://test.local/ns/default/sa/a: " in line
    assert f"(trace {trace_id})" in line
    assert not [r for r in _reasons(mesh, "a-1") if " 200 " in r]
