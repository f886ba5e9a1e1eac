"""Calls leaving the mesh, through a real sidecar: servers on other loopback addresses
(127.0.0.2-4) stand for the world outside. REGISTRY_ONLY blocks a host the mesh does
not know with a 502 that names the policy and lets a declared ExternalService through;
ALLOW_ANY lets any host through; an ExternalService with ``tls`` is reached over HTTPS
though the app speaks plain HTTP to its sidecar."""

from __future__ import annotations

import re
import ssl
import textwrap
from contextlib import ExitStack
from pathlib import Path

from tests.helpers.certs import server_certificate
from tests.helpers.harness import Mesh
from tests.helpers.net import backend, free_port


def _external(name: str, host: str, address: str, port: int, extra: str = "") -> str:
    return textwrap.dedent(
        f"""
        apiVersion: sidemesh.io/v1alpha1
        kind: ExternalService
        metadata: {{name: {name}}}
        spec:
          hosts: [{host}]
          ports: [{{port: 80, targetPort: {port}}}]
          endpoints: [{{address: {address}}}]
        """
    ) + textwrap.indent(textwrap.dedent(extra), "  ")


def _cluster_stat(mesh: Mesh, workload: str, stat: str) -> int:
    text = mesh.workloads[workload].admin("/stats", {"filter": re.escape(stat)}).text
    values = dict(line.rsplit(": ", 1) for line in text.splitlines() if ": " in line)
    return int(values.get(stat, 0))


def test_registry_only_blocks_an_unknown_host_and_allows_a_declared_one(tmp_path: Path) -> None:
    declared_port, unknown_port = free_port(), free_port()
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    mesh.add("b-1", "b")
    mesh.mesh_settings = {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}
    mesh.policies = [_external("world", "api.world.test", "127.0.0.2", declared_port)]
    with ExitStack() as stack:
        stack.enter_context(backend("world", declared_port, address="127.0.0.2"))
        stack.enter_context(backend("elsewhere", unknown_port, address="127.0.0.3"))
        mesh.start_all()

        declared = mesh.request("a-1", "api.world.test")
        assert declared.status_code == 200 and declared.json()["workload"] == "world"
        assert declared.json()["host"] == "api.world.test"  # as the app sent it
        blocked = mesh.request("a-1", f"127.0.0.3:{unknown_port}")
        assert blocked.status_code == 502
        assert "REGISTRY_ONLY" in blocked.text and "ExternalService" in blocked.text
        assert blocked.headers["x-sidemesh-egress"] == "blocked"
        # Observed as any service is: by its own cluster's stats.
        stat = "cluster.outbound|80||api.world.test.upstream_rq_200"
        assert _cluster_stat(mesh, "a-1", stat) >= 1

        mesh.mesh_settings = {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}
        mesh.write()
        mesh.wait_synced()
        allowed = mesh.wait_for_route("a-1", f"127.0.0.3:{unknown_port}")
        assert allowed.json()["workload"] == "elsewhere"
        assert mesh.request("a-1", "b").json()["workload"] == "b-1"  # the mesh is unchanged
        assert mesh.request("a-1", "api.world.test").json()["workload"] == "world"


def test_an_external_service_with_tls_is_called_over_https(tmp_path: Path) -> None:
    port = free_port()
    certs = server_certificate(tmp_path / "certs", "secure.world.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.certificate, certs.key)
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    mesh.mesh_settings = {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}
    mesh.policies = [
        _external(
            "secure",
            "secure.world.test",
            "127.0.0.4",
            port,
            f"tls: {{caCertificates: {certs.ca}}}\n",
        )
    ]
    with backend("secure", port, address="127.0.0.4", tls=context):
        mesh.start_all(route=None)
        # The app speaks plain HTTP to its sidecar; the server accepts only TLS.
        answer = mesh.wait_for_route("a-1", "secure.world.test")
        assert answer.json()["workload"] == "secure"
        handshakes = "cluster.outbound|80||secure.world.test.ssl.handshake"
        assert _cluster_stat(mesh, "a-1", handshakes) >= 1
