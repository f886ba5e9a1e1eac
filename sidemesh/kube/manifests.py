"""Manifests sidemesh writes for a cluster (the start of ``sidemesh install``)."""

from __future__ import annotations

import base64
from typing import Any

from sidemesh.kube.inject import INJECT_LABEL
from sidemesh.kube.webhook import INJECT_PATH

WEBHOOK_NAME = "inject.sidemesh.io"
WEBHOOK_TIMEOUT_S = 5
"""The API server gives up on the webhook after this: pod creation never hangs on it."""


def mutating_webhook_configuration(
    ca_bundle_pem: bytes,
    *,
    namespace: str = "sidemesh-system",
    service: str = "sidemesh",
    port: int = 15017,
    fail_open: bool = True,
) -> dict[str, Any]:
    """Pods created in namespaces labelled ``sidemesh.io/inject=enabled`` are sent to
    the webhook; ``fail_open``: if it cannot be reached, pods are created without the
    sidecar (``Ignore``), else their creation fails (``Fail``)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "sidemesh-sidecar-injector"},
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "timeoutSeconds": WEBHOOK_TIMEOUT_S,
                "failurePolicy": "Ignore" if fail_open else "Fail",
                "reinvocationPolicy": "Never",
                "clientConfig": {
                    "service": {
                        "name": service,
                        "namespace": namespace,
                        "path": INJECT_PATH,
                        "port": port,
                    },
                    "caBundle": base64.b64encode(ca_bundle_pem).decode(),
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {"matchLabels": {INJECT_LABEL: "enabled"}},
                # A pod may still opt out by annotation; the webhook reads it.
            }
        ],
    }
