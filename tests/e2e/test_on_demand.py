"""Each sidecar holds what its workload uses, with real Envoys: in a mesh of 200
services a sidecar starts with none of the others, learns one at its app's first call
(which succeeds) and shows it in proxy-config; a service it may
not call is never sent to it and a call gets a 403 that says why."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.harness import Mesh

SECRET_POLICY = """
apiVersion: sidemesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: b-only-from-itself}
spec:
  targetRefs: [{kind: Service, name: b}]
  action: ALLOW
  rules:
    - from: [{source: {principals: ["test.local/ns/default/sa/b"]}}]
"""


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    """a-1 and b-1 on delta xDS (on-demand virtual hosts are delta only)."""
    m = Mesh(tmp_path, "delta")
    m.add("a-1", "a")
    m.add("b-1", "b", version="v1")
    try:
        yield m
    finally:
        m.close()


def _held(mesh: Mesh, name: str) -> tuple[dict[str, str], set[str]]:
    config = mesh.api(f"/v1/proxies/sidecar~{name}~default/config")
    clusters = {n for n in config["types"]["clusters"] if n.startswith("outbound|")}
    return config["services"], clusters


def _start(mesh: Mesh) -> None:
    mesh.extra_services = [
        {"name": f"filler-{i:03d}", "ports": [{"port": 9080}]} for i in range(198)
    ]
    mesh.start_control_plane()
    for name in list(mesh.workloads):
        mesh.start_workload(name)
    mesh.wait_synced()


def test_a_sidecar_learns_a_service_at_its_first_call(mesh: Mesh) -> None:
    _start(mesh)
    services, clusters = _held(mesh, "a-1")
    assert services == {} and clusters == set(), (services, clusters)

    started = time.monotonic()
    first = mesh.request("a-1", "b")
    first_s = time.monotonic() - started
    assert first.status_code == 200, first.text
    assert first.json()["workload"] == "b-1"
    print(f"first call to a service not held: {first_s * 1000:.1f} ms")
    services, clusters = _held(mesh, "a-1")
    assert services == {"b.default": "on demand"}
    assert clusters == {"outbound|9080||b.default"}
    # The other spellings of the same service are the same virtual host.
    assert mesh.request("a-1", "b.default.svc:9080").status_code == 200


def test_a_service_the_caller_may_not_call_is_never_sent_and_refused_with_a_reason(
    mesh: Mesh,
) -> None:
    mesh.policies = [SECRET_POLICY]
    _start(mesh)
    reply = mesh.request("a-1", "b")
    assert reply.status_code == 403
    assert "b.default does not accept calls from this workload" in reply.text
    services, clusters = _held(mesh, "a-1")
    assert services == {} and clusters == set()
