"""Kubernetes objects into the documents mesh.yaml holds: pure, no I/O.

A Service becomes a service (its ports' protocols from ``appProtocol`` or the port
name's prefix, as Istio reads them: ``http``, ``http2``/``h2c``, ``grpc``, else TCP); a
pod that carries the sidecar and has an address becomes a workload at its pod IP
(``ready`` once the pod is Ready: only then is it an endpoint), with its service
account as its identity and the first Service (by name) that selects it as its
service (the others select it by labels too). Its sidecar is captured: the pod's
redirect brings it the traffic. Policy objects (Gateway API routes,
sidemesh's kinds) pass through as they are, their server-set metadata dropped.

Each document remembers the object it came from, so a problem the model's checks
find (``services[3].ports[0]``, ``HTTPRoute shop/reviews spec.rules[0]``) is reported
on that object and only that object is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidemesh.model.policy.documents import KINDS, RawDocument
from sidemesh.sources.leave_out import Documents

CONVERTED_FROM = "sidemesh.io/converted-from"
"""On a document made from an SMI object: that object (``Kind namespace/name``)."""
STATUS_ANNOTATION = "sidemesh.io/status"
CALLS_ANNOTATION = "sidemesh.io/calls"
"""On a pod: the services its app calls (``reviews,ratings.other``), which its sidecar
holds from the start (a workload's ``calls``); any other is learned at its first call."""
"""Set on a pod by injection; a pod with it (or the proxy container) is in the mesh."""
PROXY_CONTAINER = "sidemesh-proxy"
OUTBOUND_CAPTURE_PORT = 15001
"""Where a pod's redirect sends its outbound traffic: its sidecar's outbound port."""

Object = Mapping[str, Any]


@dataclass(frozen=True)
class ObjectRef:
    """How messages and Events name a Kubernetes object."""

    kind: str
    namespace: str
    name: str
    api_version: str = field(default="v1", compare=False)
    uid: str = field(default="", compare=False)
    """Not compared: an object being created (the validating webhook's) has none yet."""

    def __str__(self) -> str:
        return (
            f"{self.kind} {self.namespace}/{self.name}"
            if self.namespace
            else (f"{self.kind} {self.name}")
        )

    @classmethod
    def of(cls, obj: Object, kind: str | None = None) -> ObjectRef:
        meta = obj.get("metadata") or {}
        return cls(
            kind=kind or str(obj.get("kind", "")),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            api_version=str(obj.get("apiVersion") or "v1"),
            uid=str(meta.get("uid") or ""),
        )


def is_meshed(pod: Object) -> bool:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    containers = [*spec.get("initContainers", []), *spec.get("containers", [])]
    return STATUS_ANNOTATION in (meta.get("annotations") or {}) or any(
        c.get("name") == PROXY_CONTAINER for c in containers
    )


def is_present(pod: Object) -> bool:
    """Has an address and is starting or running: a workload of the mesh. Its sidecar
    runs before its app (a native sidecar, while the pod is still Pending) and needs
    its certificate and config to become ready, so it is in the mesh from then on."""
    status = pod.get("status") or {}
    return bool(status.get("podIP")) and status.get("phase") in ("Pending", "Running")


def is_serving(pod: Object) -> bool:
    """Running, ready, and not being deleted: a pod to send traffic to."""
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    if status.get("phase") != "Running" or not status.get("podIP"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def port_protocol(port: Object) -> str:
    app = str(port.get("appProtocol") or "").lower()
    name = str(port.get("name") or "").lower()
    for candidate in (app.removeprefix("kubernetes.io/"), name.split("-", 1)[0]):
        if candidate in ("http", "https"):
            return "http"
        if candidate in ("http2", "h2c"):
            return "http2"
        if candidate == "grpc":
            return "grpc"
        if candidate in ("tcp", "tls"):
            return "tcp"
    return "tcp"


def _service_port(port: Object) -> dict[str, Any]:
    out: dict[str, Any] = {"port": port.get("port"), "protocol": port_protocol(port)}
    if port.get("name"):
        out["name"] = port["name"]
    return out


def _port_name(port: Object) -> str:
    return str(port.get("name") or f"{port_protocol(port)}-{port.get('port')}")


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _target_port(port: Object, pod: Object) -> int | None:
    """The pod's port behind a Service port: a number, or a container port's name."""
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for container_port in container.get("ports") or []:
            if container_port.get("name") == target:
                return int(container_port["containerPort"])
    return None


def _policy_document(obj: Object) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    kept = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if meta.get(k)}
    out: dict[str, Any] = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind")}
    out["metadata"] = kept
    if "spec" in obj:
        out["spec"] = obj["spec"]
    return out


def is_policy(obj: Object) -> bool:
    group = str(obj.get("apiVersion") or "").split("/", 1)[0]
    return (group, str(obj.get("kind"))) in KINDS


def to_documents(
    mesh: Mapping[str, Any],
    services: Iterable[Object],
    pods: Iterable[Object],
    policies: Iterable[Object],
    skip: Sequence[ObjectRef] = (),
) -> Documents[ObjectRef]:
    """The documents of the objects given, but those in ``skip`` (found bad before)."""
    skipped = set(skip)
    first: dict[str, Any] = {"mesh": dict(mesh), "services": [], "workloads": []}
    docs: Documents[ObjectRef] = Documents(first, [])
    k8s_services = [
        s
        for s in sorted(services, key=lambda s: (_ns(s), _name(s)))
        if (s.get("spec") or {}).get("selector")
        and (s.get("spec") or {}).get("type") != "ExternalName"
        and ObjectRef.of(s, "Service") not in skipped
    ]
    for svc in k8s_services:
        spec = svc["spec"]
        docs.origin[f"services[{len(first['services'])}]"] = ObjectRef.of(svc, "Service")
        first["services"].append(
            {
                "name": _name(svc),
                "namespace": _ns(svc),
                "ports": [_service_port(p) for p in spec.get("ports") or []],
                "selector": dict(spec["selector"]),
                # A headless Service ("None") has no virtual address to dial.
                "addresses": [
                    ip
                    for ip in spec.get("clusterIPs") or [spec.get("clusterIP")]
                    if ip and ip != "None"
                ],
            }
        )
    for pod in sorted(pods, key=lambda p: (_ns(p), _name(p))):
        ref = ObjectRef.of(pod, "Pod")
        if ref in skipped or not is_meshed(pod) or not is_present(pod):
            continue
        labels = (pod.get("metadata") or {}).get("labels") or {}
        own = next(
            (
                s
                for s in k8s_services
                if _ns(s) == _ns(pod) and _selects(s["spec"]["selector"], labels)
            ),
            None,
        )
        if own is None:
            continue  # no Service selects it: nothing calls it by name
        ports = []
        for port in own["spec"].get("ports") or []:
            target = _target_port(port, pod)
            if target is not None:
                ports.append({"name": _port_name(port), "port": target, "appPort": target})
        docs.origin[f"workloads[{len(first['workloads'])}]"] = ref
        first["workloads"].append(
            {
                "name": _name(pod),
                "namespace": _ns(pod),
                "service": _name(own),
                "labels": dict(labels),
                "address": pod["status"]["podIP"],
                "ports": ports,
                "serviceAccount": (pod.get("spec") or {}).get("serviceAccountName") or "default",
                "sidecar": {"outboundPort": OUTBOUND_CAPTURE_PORT, "capture": True},
                "ready": is_serving(pod),
                "calls": _calls(pod),
            }
        )
    for obj in sorted(policies, key=lambda o: (str(o.get("kind")), _ns(o), _name(o))):
        ref = _origin_of(obj)
        if ref in skipped:
            continue
        where = str(ObjectRef.of(obj))
        docs.origin[where] = ref
        docs.policies.append(RawDocument(where, _policy_document(obj)))
    return docs


def services_running_as(
    services: Iterable[Object], pods: Iterable[Object], namespace: str, account: str
) -> list[str]:
    """The Services of ``namespace`` that select a pod running as ``account``."""
    labels = [
        (p.get("metadata") or {}).get("labels") or {}
        for p in pods
        if _ns(p) == namespace
        and ((p.get("spec") or {}).get("serviceAccountName") or "default") == account
    ]
    return sorted(
        _name(s)
        for s in services
        if _ns(s) == namespace
        and any(_selects((s.get("spec") or {}).get("selector") or {}, found) for found in labels)
    )


def _calls(pod: Object) -> list[str]:
    text = ((pod.get("metadata") or {}).get("annotations") or {}).get(CALLS_ANNOTATION, "")
    return [name.strip() for name in str(text).split(",") if name.strip()]


def _origin_of(obj: Object) -> ObjectRef:
    """The object a document came from: itself, or the SMI object it was made of."""
    source = ((obj.get("metadata") or {}).get("annotations") or {}).get(CONVERTED_FROM)
    if source:
        kind, _, rest = str(source).partition(" ")
        namespace, _, name = rest.partition("/")
        return ObjectRef(kind, namespace, name)
    return ObjectRef.of(obj)


def _name(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _ns(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "default")
