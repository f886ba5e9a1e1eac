"""Manifests sidemesh writes for a cluster (the start of ``sidemesh install``)."""

from __future__ import annotations

import base64
from typing import Any

from sidemesh.kube.inject import INJECT_LABEL
from sidemesh.kube.webhook import INJECT_PATH, VALIDATE_PATH

WEBHOOK_NAME = "inject.sidemesh.io"
WEBHOOK_CONFIGURATION_NAME = "sidemesh-sidecar-injector"
VALIDATING_CONFIGURATION_NAME = "sidemesh-policy-validator"
VALIDATING_WEBHOOK_NAME = "validate.sidemesh.io"
WEBHOOK_TIMEOUT_S = 5
"""The API server gives up on the webhook after this: pod creation never hangs on it."""


def mutating_webhook_configuration(
    ca_bundle_pem: bytes | None,
    *,
    namespace: str = "sidemesh-system",
    service: str = "sidemesh",
    port: int = 15017,
    fail_open: bool = True,
) -> dict[str, Any]:
    """Pods created in namespaces labelled ``sidemesh.io/inject=enabled`` are sent to
    the webhook; ``fail_open``: if it cannot be reached, pods are created without the
    sidecar (``Ignore``), else their creation fails (``Fail``). ``ca_bundle_pem`` None:
    left for the control plane to fill in with the mesh root."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_CONFIGURATION_NAME},
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "timeoutSeconds": WEBHOOK_TIMEOUT_S,
                "failurePolicy": "Ignore" if fail_open else "Fail",
                "reinvocationPolicy": "Never",
                "clientConfig": _client_config(
                    ca_bundle_pem, namespace, service, port, INJECT_PATH
                ),
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


def validating_webhook_configuration(
    ca_bundle_pem: bytes | None,
    *,
    namespace: str = "sidemesh-system",
    service: str = "sidemesh",
    port: int = 15017,
) -> dict[str, Any]:
    """Policy objects (sidemesh's kinds, GAMMA routes) are checked by the control plane
    for what their CRD schemas cannot say: the services, routes and filters they name.
    It fails open: the schema has already caught field errors, and an object the
    control plane refuses later is left out and reported on itself (an Event)."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": VALIDATING_CONFIGURATION_NAME},
        "webhooks": [
            {
                "name": VALIDATING_WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "timeoutSeconds": WEBHOOK_TIMEOUT_S,
                "failurePolicy": "Ignore",
                "clientConfig": _client_config(
                    ca_bundle_pem, namespace, service, port, VALIDATE_PATH
                ),
                "rules": [
                    {
                        "apiGroups": ["sidemesh.io"],
                        "apiVersions": ["v1alpha1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["*"],
                        "scope": "Namespaced",
                    },
                    {
                        "apiGroups": ["gateway.networking.k8s.io"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["httproutes", "grpcroutes"],
                        "scope": "Namespaced",
                    },
                ],
            }
        ],
    }


def _client_config(
    ca_bundle_pem: bytes | None, namespace: str, service: str, port: int, path: str
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "service": {"name": service, "namespace": namespace, "path": path, "port": port}
    }
    if ca_bundle_pem is not None:
        config["caBundle"] = base64.b64encode(ca_bundle_pem).decode()
    return config
