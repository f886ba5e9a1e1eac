"""Sidecar injection: which pods get the sidecar, and the change that adds it.

A pod in a namespace labelled ``sidemesh.io/inject=enabled`` gets, before its own init
containers, an init container that installs the traffic redirect and the sidecar as a
*native sidecar* (an init container with ``restartPolicy: Always`` and a startup probe):
the kubelet starts the app only once the proxy is ready, keeps the proxy running beside
it, and stops it after the app, so Jobs complete. The sidecar proves its pod's identity
with a projected service-account token (audience ``sidemesh``); the mesh's root
certificate comes from a ConfigMap. The same change is applied offline to manifests
(``sidemesh inject``) and by the webhook to pods being created, as a JSONPatch.

Injection is idempotent: a pod that already has the sidecar (its status annotation or
its container) is left as it is."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sidemesh.kube.redirect import INBOUND_CAPTURE_PORT, OUTBOUND_CAPTURE_PORT, PROXY_UID

INJECT_LABEL = "sidemesh.io/inject"
"""On a namespace: ``enabled`` injects its pods. On a pod, as an annotation: ``false``
keeps it out."""
STATUS_ANNOTATION = "sidemesh.io/status"
SERVICE_ANNOTATION = "sidemesh.io/service"
EXCLUDE_INBOUND_ANNOTATION = "sidemesh.io/exclude-inbound-ports"
EXCLUDE_OUTBOUND_ANNOTATION = "sidemesh.io/exclude-outbound-ports"
PROXY_CONTAINER = "sidemesh-proxy"
INIT_CONTAINER = "sidemesh-init"
TOKEN_VOLUME = "sidemesh-token"
CA_VOLUME = "sidemesh-ca"
RUN_VOLUME = "sidemesh-run"
TOKEN_DIR = "/var/run/secrets/sidemesh/tokens"
CA_DIR = "/var/run/secrets/sidemesh/ca"
RUN_DIR = "/var/run/sidemesh"
SOCKET_DIR = f"{RUN_DIR}/sockets"
"""Made 0700 by the sidecar itself (an emptyDir is 0777): its SDS and admin sockets."""
TOKEN_AUDIENCE = "sidemesh"


@dataclass(frozen=True)
class InjectConfig:
    image: str = "ghcr.io/sidemesh/sidemesh:latest"
    control_plane: str = "sidemesh.sidemesh-system.svc:15010"
    ca_address: str = "sidemesh.sidemesh-system.svc:15012"
    root_cert_configmap: str = "sidemesh-root-cert"
    token_lifetime_s: int = 3600
    proxy_resources: Mapping[str, Any] = field(
        default_factory=lambda: {"requests": {"cpu": "10m", "memory": "64Mi"}}
    )


@dataclass(frozen=True)
class Decision:
    inject: bool
    reason: str


def decide(pod: Mapping[str, Any], namespace_labels: Mapping[str, str] | None) -> Decision:
    """``namespace_labels``: None where the caller already selected the namespace (the
    webhook's namespaceSelector does, and an offline ``inject`` is asked for)."""
    meta = pod.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    spec = pod.get("spec") or {}
    if namespace_labels is not None and namespace_labels.get(INJECT_LABEL) != "enabled":
        return Decision(False, f"its namespace is not labelled {INJECT_LABEL}=enabled")
    if str(annotations.get(INJECT_LABEL, "")).lower() == "false":
        return Decision(False, f'opted out ({INJECT_LABEL}: "false")')
    if is_injected(pod):
        return Decision(False, "already injected")
    if spec.get("hostNetwork"):
        return Decision(False, "it uses the host's network: a redirect would take the node's")
    return Decision(True, "injected")


def is_injected(pod: Mapping[str, Any]) -> bool:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    spec = pod.get("spec") or {}
    names = {c.get("name") for c in [*spec.get("initContainers", []), *spec.get("containers", [])]}
    return STATUS_ANNOTATION in annotations or PROXY_CONTAINER in names


def service_of(pod: Mapping[str, Any]) -> str:
    """The service the pod serves: its annotation, else the labels Kubernetes tools
    use for an app's name, else its service account."""
    meta = pod.get("metadata") or {}
    annotations, labels = meta.get("annotations") or {}, meta.get("labels") or {}
    for found in (
        annotations.get(SERVICE_ANNOTATION),
        labels.get("app.kubernetes.io/name"),
        labels.get("app"),
        (pod.get("spec") or {}).get("serviceAccountName"),
    ):
        if found:
            return str(found)
    return "default"


def injected(pod: Mapping[str, Any], config: InjectConfig) -> dict[str, Any]:
    """``pod`` with the sidecar: what ``patch`` makes of it."""
    out = copy.deepcopy(dict(pod))
    spec = out.setdefault("spec", {})
    spec["initContainers"] = [
        _init_container(pod, config),
        _proxy_container(pod, config),
        *spec.get("initContainers", []),
    ]
    spec["volumes"] = [*spec.get("volumes", []), *_volumes(config)]
    meta = out.setdefault("metadata", {})
    meta["annotations"] = {**(meta.get("annotations") or {}), STATUS_ANNOTATION: "injected"}
    return out


def patch(pod: Mapping[str, Any], config: InjectConfig) -> list[dict[str, Any]]:
    """The JSONPatch (RFC 6902) that turns ``pod`` into ``injected(pod)``."""
    spec = pod.get("spec") or {}
    ops: list[dict[str, Any]] = []
    first = [_init_container(pod, config), _proxy_container(pod, config)]
    if spec.get("initContainers"):
        # Each added at the front, the last first: they end up in order, before the pod's.
        ops += [
            {"op": "add", "path": "/spec/initContainers/0", "value": c} for c in reversed(first)
        ]
    else:
        ops.append({"op": "add", "path": "/spec/initContainers", "value": first})
    if spec.get("volumes"):
        ops += [{"op": "add", "path": "/spec/volumes/-", "value": v} for v in _volumes(config)]
    else:
        ops.append({"op": "add", "path": "/spec/volumes", "value": _volumes(config)})
    if (pod.get("metadata") or {}).get("annotations"):
        key = STATUS_ANNOTATION.replace("~", "~0").replace("/", "~1")
        ops.append({"op": "add", "path": f"/metadata/annotations/{key}", "value": "injected"})
    else:
        ops.append(
            {"op": "add", "path": "/metadata/annotations", "value": {STATUS_ANNOTATION: "injected"}}
        )
    return ops


def _ports(annotations: Mapping[str, Any], key: str) -> list[int]:
    raw = str(annotations.get(key, "") or "")
    return [int(p) for p in raw.replace(" ", "").split(",") if p.isdigit()]


def _init_container(pod: Mapping[str, Any], config: InjectConfig) -> dict[str, Any]:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    args = [
        "redirect",
        "--inbound-port", str(INBOUND_CAPTURE_PORT),
        "--outbound-port", str(OUTBOUND_CAPTURE_PORT),
        "--proxy-uid", str(PROXY_UID),
    ]  # fmt: skip
    for port in _ports(annotations, EXCLUDE_INBOUND_ANNOTATION):
        args += ["--exclude-inbound-port", str(port)]
    for port in _ports(annotations, EXCLUDE_OUTBOUND_ANNOTATION):
        args += ["--exclude-outbound-port", str(port)]
    return {
        "name": INIT_CONTAINER,
        "image": config.image,
        "args": args,
        "securityContext": {
            # Only what changing the pod's own nat table takes, and only for this.
            "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
            "runAsUser": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
        },
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    }


def _proxy_container(pod: Mapping[str, Any], config: InjectConfig) -> dict[str, Any]:
    args = [
        "sidecar",
        "--workload", "$(POD_NAME)",
        "--namespace", "$(POD_NAMESPACE)",
        "--service", service_of(pod),
        "--control-plane", config.control_plane,
        "--ca-address", config.ca_address,
        "--token-file", f"{TOKEN_DIR}/token",
        "--ca-bundle", f"{CA_DIR}/root-cert.pem",
        "--socket-dir", SOCKET_DIR,
    ]  # fmt: skip
    return {
        "name": PROXY_CONTAINER,
        "image": config.image,
        "restartPolicy": "Always",
        "args": args,
        "env": [
            _field_env("POD_NAME", "metadata.name"),
            _field_env("POD_NAMESPACE", "metadata.namespace"),
            _field_env("POD_IP", "status.podIP"),
        ],
        # The app starts once its sidecar has its config and certificate.
        "startupProbe": {
            "exec": {"command": ["sidemesh", "ready", "--socket-dir", SOCKET_DIR]},
            "periodSeconds": 1,
            "timeoutSeconds": 2,
            "failureThreshold": 120,
        },
        "securityContext": {
            "runAsUser": PROXY_UID,
            "runAsGroup": PROXY_UID,
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": dict(config.proxy_resources),
        "volumeMounts": [
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
            {"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True},
            {"name": RUN_VOLUME, "mountPath": RUN_DIR},
        ],
    }


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _volumes(config: InjectConfig) -> list[dict[str, Any]]:
    return [
        {
            "name": TOKEN_VOLUME,
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": TOKEN_AUDIENCE,
                            "expirationSeconds": config.token_lifetime_s,
                            "path": "token",
                        }
                    }
                ]
            },
        },
        {"name": CA_VOLUME, "configMap": {"name": config.root_cert_configmap}},
        {"name": RUN_VOLUME, "emptyDir": {"medium": "Memory"}},
    ]


POD_TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
"""Where each kind that runs pods keeps its pod (template)."""


def inject_manifest(
    document: Mapping[str, Any], config: InjectConfig
) -> tuple[dict[str, Any], Decision | None]:
    """One manifest with its pod (template) injected, as ``sidemesh inject`` writes it;
    the decision, or None for a kind that runs no pods (left as it is)."""
    out = copy.deepcopy(dict(document))
    path = POD_TEMPLATE_PATHS.get(str(document.get("kind")))
    if path is None:
        return out, None
    holder: dict[str, Any] = out
    for key in path:
        holder = holder.setdefault(key, {})
    pod = {"metadata": holder.get("metadata") or {}, "spec": holder.get("spec") or {}}
    decision = decide(pod, None)
    if decision.inject:
        done = injected(pod, config)
        holder["metadata"], holder["spec"] = done["metadata"], done["spec"]
    return out, decision
