"""The control plane against a cluster: a real ``ControlPlane`` (ADS, CA, API) watching
the small API server written for the tests (``tests/helpers/kube_apiserver.py``; no
real kube-apiserver can run on these machines), through the real client library.

It serves the cluster's meshed pods, signs certificates for pods that prove themselves
with a projected service-account token (checked by TokenReview), serves the injection
webhook over HTTPS with a certificate from the mesh's own CA, and puts that CA's root
into the webhook configuration's ``caBundle`` so the API server trusts it."""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from sidemesh.kube.manifests import (
    mutating_webhook_configuration,
    validating_webhook_configuration,
)
from sidemesh.kube.webhook import INJECT_PATH, VALIDATE_PATH
from sidemesh.settings import ControlPlaneSettings
from tests.helpers.harness import ControlPlaneThread
from tests.helpers.kube_apiserver import KubeTestServer
from tests.identity.test_csr import make_csr
from tests.kube.test_inject import _pod
from tests.kube.test_webhook import _review
from tests.sources.kube.test_source import pod, route, service

MESH = "mesh: {trustDomain: example.org}\nworkloads: []\n"
CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1"


def namespace(name: str, inject: bool) -> dict[str, Any]:
    labels = {"sidemesh.io/inject": "enabled"} if inject else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KubeTestServer]:
    server = KubeTestServer(tmp_path / "apiserver").start()
    server.apply(mutating_webhook_configuration(b"not yet the mesh root"))
    server.apply(validating_webhook_configuration(None))
    server.apply(namespace("shop", inject=True))
    server.apply(namespace("legacy", inject=False))
    server.apply(service("reviews", {"app": "reviews"}))
    server.apply(pod("reviews-v1-a", {"app": "reviews", "version": "v1"}, "10.1.0.11"))
    yield server
    server.stop()


@pytest.fixture
def plane(tmp_path: Path, server: KubeTestServer) -> Iterator[ControlPlaneThread]:
    config = tmp_path / "mesh.yaml"
    config.write_text(MESH)
    settings = ControlPlaneSettings(
        config=config,
        xds_port=0,
        api_port=0,
        ca_port=0,
        state_dir=tmp_path / "state",
        telemetry_interval_s=0,
        kubernetes=True,
        kubeconfig=server.kubeconfig(),
        webhook_host="127.0.0.1",
        webhook_port=0,
    )
    thread = ControlPlaneThread(settings)
    thread.start()
    yield thread
    thread.stop()


def _root(plane: ControlPlaneThread) -> bytes:
    ca = plane.control_plane.ca
    assert ca is not None
    return ca.trust_bundle_pem


def _sign(plane: ControlPlaneThread, token: str, identity: str) -> httpx.Response:
    trust = ssl.create_default_context(cadata=_root(plane).decode())
    csr, _ = make_csr(identity)
    return httpx.post(
        f"https://127.0.0.1:{plane.control_plane.ca_port}/v1/certificates",
        json={"csr": csr.decode()},
        headers={"Authorization": f"Bearer {token}"},
        verify=trust,
        timeout=10,
    )


def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


def test_the_clusters_meshed_pods_are_served_and_follow_the_cluster(
    plane: ControlPlaneThread, server: KubeTestServer
) -> None:
    state = plane.control_plane.publisher.state
    assert state.identity_of("reviews-v1-a", "shop") == "spiffe://example.org/ns/shop/sa/reviews"
    server.apply(pod("reviews-v2-a", {"app": "reviews", "version": "v2"}, "10.1.0.12"))
    _until(lambda: plane.control_plane.publisher.state.workload("reviews-v2-a", "shop") is not None)


def test_a_pod_with_its_projected_token_gets_its_service_accounts_certificate(
    plane: ControlPlaneThread, server: KubeTestServer
) -> None:
    spiffe = "spiffe://example.org/ns/shop/sa/reviews"
    reply = _sign(plane, server.token("shop", "reviews", pod="reviews-v1-a"), spiffe)
    assert reply.status_code == 200, reply.text
    assert reply.json()["identity"] == spiffe
    stolen = server.token("shop", "ratings", pod="reviews-v1-a")
    refused = _sign(plane, stolen, spiffe)
    assert refused.status_code == 401
    assert "runs as shop/reviews" in refused.json()["detail"]
    not_for_us = server.token("shop", "reviews", pod="reviews-v1-a", audience="vault")
    assert _sign(plane, not_for_us, spiffe).status_code == 401


def test_the_webhook_is_served_with_a_mesh_certificate_the_api_server_is_told_to_trust(
    plane: ControlPlaneThread, server: KubeTestServer
) -> None:
    root = _root(plane)
    stored = server._call(
        lambda: server.objects[
            (
                "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
                "",
                "sidemesh-sidecar-injector",
            )
        ]
    )
    assert base64.b64decode(stored["webhooks"][0]["clientConfig"]["caBundle"]) == root
    validating = server._call(
        lambda: server.objects[
            (f"{CONFIGURATIONS}/validatingwebhookconfigurations", "", "sidemesh-policy-validator")
        ]
    )
    assert base64.b64decode(validating["webhooks"][0]["clientConfig"]["caBundle"]) == root
    trust = ssl.create_default_context(cadata=root.decode())
    port = plane.control_plane.cluster.webhook_port  # type: ignore[union-attr]
    reply = httpx.post(
        f"https://127.0.0.1:{port}{INJECT_PATH}", json=_review(_pod()), verify=trust, timeout=10
    )
    assert reply.status_code == 200
    answer = reply.json()["response"]
    assert answer["allowed"] and answer["patchType"] == "JSONPatch"
    assert "sidemesh-proxy" in json.dumps(json.loads(base64.b64decode(answer["patch"])))
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    names = (
        x509.load_pem_x509_certificate(pem.encode())
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value.get_values_for_type(x509.DNSName)
    )
    assert "sidemesh.sidemesh-system.svc" in names


def _validate(plane: ControlPlaneThread, obj: dict[str, Any]) -> dict[str, Any]:
    trust = ssl.create_default_context(cadata=_root(plane).decode())
    port = plane.control_plane.cluster.webhook_port  # type: ignore[union-attr]
    review = _review(obj)
    review["request"]["kind"] = {
        "group": "gateway.networking.k8s.io",
        "version": "v1",
        "kind": "HTTPRoute",
    }
    reply = httpx.post(
        f"https://127.0.0.1:{port}{VALIDATE_PATH}", json=review, verify=trust, timeout=10
    )
    assert reply.status_code == 200
    response: dict[str, Any] = reply.json()["response"]
    return response


def test_the_validating_webhook_refuses_what_the_mesh_would_leave_out(
    plane: ControlPlaneThread,
) -> None:
    assert _validate(plane, route("canary", {"reviews": 1}))["allowed"] is True
    refused = _validate(plane, route("orphan", {"reviews": 1}, parent="no-such-service"))
    assert refused["allowed"] is False
    assert refused["status"]["code"] == 422
    assert "spec.parentRefs[0].name" in refused["status"]["message"]
    assert "no-such-service" in refused["status"]["message"]


def test_namespaces_labelled_for_injection_get_the_mesh_root(
    plane: ControlPlaneThread, server: KubeTestServer
) -> None:
    root = _root(plane).decode()
    _until(lambda: ("shop", "sidemesh-root-cert") in server.configmaps)
    assert server.configmaps[("shop", "sidemesh-root-cert")]["data"] == {"root-cert.pem": root}
    assert ("legacy", "sidemesh-root-cert") not in server.configmaps
    server.apply(namespace("legacy", inject=True))
    _until(lambda: ("legacy", "sidemesh-root-cert") in server.configmaps)
