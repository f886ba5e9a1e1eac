"""The injection webhook over real HTTPS (uvicorn, a certificate its client checks),
with real ``AdmissionReview`` v1 requests: the JSONPatch it answers, applied to the pod,
gives a valid pod (``kubernetes-validate``, real schemas) with the sidecar first; pods
it must leave alone come back allowed and unchanged. Its webhook configuration is valid
Kubernetes too (no API server can run on these machines)."""

from __future__ import annotations

import base64
import copy
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import kubernetes_validate
import pytest
import uvicorn

from sidemesh.kube.inject import INIT_CONTAINER, PROXY_CONTAINER, InjectConfig, injected
from sidemesh.kube.manifests import mutating_webhook_configuration
from sidemesh.kube.webhook import INJECT_PATH, webhook_app
from tests.helpers.certs import server_certificate
from tests.kube.test_inject import VERSIONS, _pod

CONFIG = InjectConfig(image="registry.example/sidemesh:1.0")


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert = server_certificate(tmp_path, "localhost")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            webhook_app(CONFIG),
            log_level="warning",
            ssl_certfile=str(cert.certificate),
            ssl_keyfile=str(cert.key),
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    try:
        yield f"https://localhost:{port}", cert.ca
    finally:
        server.should_exit = True
        thread.join(10)


def _review(pod: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": operation,
            "object": pod,
        },
    }


def _ask(webhook: tuple[str, Path], review: Any) -> httpx.Response:
    url, ca = webhook
    trust = ssl.create_default_context(cafile=str(ca))
    return httpx.post(f"{url}{INJECT_PATH}", json=review, verify=trust, timeout=5)


def test_a_pod_comes_back_with_a_patch_that_adds_the_sidecar_first(
    webhook: tuple[str, Path],
) -> None:
    pod = _pod(initContainers=[{"name": "migrate", "image": "migrate:1"}])
    answer = _ask(webhook, _review(pod)).json()
    response = answer["response"]
    assert answer["kind"] == "AdmissionReview" and answer["apiVersion"] == "admission.k8s.io/v1"
    assert response["uid"] == "705ab4f5-6393-11e8-b7cc-42010a800002"
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    patched = jsonpatch.apply_patch(copy.deepcopy(pod), ops)
    assert [c["name"] for c in patched["spec"]["initContainers"]] == [
        INIT_CONTAINER,
        PROXY_CONTAINER,
        "migrate",
    ]
    for version in VERSIONS:
        kubernetes_validate.validate(patched, version, strict=True)


@pytest.mark.parametrize(
    "pod",
    [
        injected(_pod(), CONFIG),
        _pod(hostNetwork=True),
        {**_pod(), "metadata": {"name": "x", "annotations": {"sidemesh.io/inject": "false"}}},
    ],
    ids=["already-injected", "host-network", "opted-out"],
)
def test_pods_to_leave_alone_are_allowed_without_a_patch(
    webhook: tuple[str, Path], pod: dict[str, Any]
) -> None:
    response = _ask(webhook, _review(pod)).json()["response"]
    assert response == {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True}


def test_an_update_is_allowed_without_a_patch(webhook: tuple[str, Path]) -> None:
    response = _ask(webhook, _review(_pod(), operation="UPDATE")).json()["response"]
    assert "patch" not in response and response["allowed"] is True


def test_a_request_that_is_no_admission_review_is_refused_with_why(
    webhook: tuple[str, Path],
) -> None:
    reply = _ask(webhook, {"kind": "Pod"})
    assert reply.status_code == 400
    assert reply.json()["detail"] == "expected an AdmissionReview (admission.k8s.io/v1)"


@pytest.mark.parametrize("version", VERSIONS)
def test_the_webhook_configuration_is_valid_kubernetes(version: str, tmp_path: Path) -> None:
    cert = server_certificate(tmp_path, "sidemesh.sidemesh-system.svc")
    configuration = mutating_webhook_configuration(cert.ca.read_bytes())
    kubernetes_validate.validate(configuration, version, strict=True)
    (hook,) = configuration["webhooks"]
    assert hook["namespaceSelector"] == {"matchLabels": {"sidemesh.io/inject": "enabled"}}
    assert hook["timeoutSeconds"] <= 10 and hook["failurePolicy"] == "Ignore"
