"""From what mesh.yaml says to what runs: replicas expanded, namespaces and service
accounts filled in, every port decided (pinned, defaulted, or picked free)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sidemesh.model.mesh import (
    Gateway,
    MeshDocument,
    Service,
    Upstream,
    Workload,
    WorkloadPort,
)
from sidemesh.model.refs import ServiceKey

PortPicker = Callable[[str, str, frozenset[int]], int]
"""(owner, role, ports it must not pick) → a free port. The same owner and role must
get the same port again, so a reload moves nothing. The ports not to pick are those
pinned in the file and those reserved (the control plane's own)."""

DEFAULT_OUTBOUND_PORT = 15001


@dataclass
class Resolved:
    document: MeshDocument
    origin: dict[str, str] = field(default_factory=dict)
    """Resolved workload or gateway name → where it was declared (``workloads[3]``)."""


def replica_names(workload: Workload) -> list[str]:
    if workload.replicas == 1:
        return [workload.name]
    return [f"{workload.name}-{i}" for i in range(1, workload.replicas + 1)]


def pinned_ports(doc: MeshDocument) -> frozenset[int]:
    ports: set[int] = set()
    for wl in doc.workloads:
        ports |= {p for p in (wl.port, wl.app_port) if p is not None}
        ports |= {p for wp in wl.ports for p in (wp.port, wp.app_port)}
        ports |= {p for p in (wl.sidecar.outbound_port,) if p is not None}
        ports |= {u.local_port for u in wl.upstreams if u.local_port is not None}
    for gw in doc.gateways:
        ports.add(gw.port)
    return frozenset(ports)


def resolve(
    doc: MeshDocument, picker: PortPicker | None, *, reserved: frozenset[int] = frozenset()
) -> Resolved:
    """``doc`` must have passed the document checks. Without a picker, unpinned sidecar
    ports take the defaults and workload ports must be given. The picker is told to
    avoid the ports of ``reserved`` (the control plane's own) as well as the pinned ones."""
    default_ns = doc.mesh.default_namespace
    pinned = pinned_ports(doc) | reserved

    def port(owner: str, role: str, given: int | None, default: int | None = None) -> int:
        if given is not None:
            return given
        if picker is not None:
            return picker(owner, role, pinned)
        assert default is not None, f"{owner}: {role} has no port and nothing picks one"
        return default

    services = {
        ServiceKey(s.name, s.namespace or default_ns): s.model_copy(
            update={"namespace": s.namespace or default_ns}
        )
        for s in doc.services
    }
    result = Resolved(document=doc)
    workloads: list[Workload] = []
    for i, wl in enumerate(doc.workloads):
        ns = wl.namespace or default_ns
        svc = services[ServiceKey(wl.service, ns)]
        for name in replica_names(wl):
            result.origin[name] = f"workloads[{i}]"
            workloads.append(_resolve_workload(wl, name, ns, svc, services, port))
    gateways: list[Gateway] = []
    for i, gw in enumerate(doc.gateways):
        result.origin[gw.name] = f"gateways[{i}]"
        gateways.append(
            gw.model_copy(
                update={
                    "namespace": gw.namespace or default_ns,
                    "service_account": gw.service_account or gw.name,
                }
            )
        )
    result.document = doc.model_copy(
        update={
            "services": tuple(services.values()),
            "workloads": tuple(workloads),
            "gateways": tuple(gateways),
        }
    )
    return result


def _resolve_workload(
    wl: Workload,
    name: str,
    ns: str,
    svc: Service,
    services: dict[ServiceKey, Service],
    port: Callable[..., int],
) -> Workload:
    if wl.ports:
        ports = wl.ports
    elif wl.port is not None and wl.app_port is not None:
        ports = (WorkloadPort(name=svc.ports[0].port_name, port=wl.port, app_port=wl.app_port),)
    else:
        ports = tuple(
            WorkloadPort(
                name=sp.port_name,
                port=port(name, f"{sp.port_name}.port", None),
                app_port=port(name, f"{sp.port_name}.appPort", None),
            )
            for sp in svc.ports
        )
    upstreams = []
    for up in wl.upstreams:
        target = services[ServiceKey(up.service, ns)]
        service_port = up.port or target.ports[0].port
        upstreams.append(
            Upstream(
                service=up.service,
                port=service_port,
                local_port=port(name, f"upstream.{up.service}.{service_port}", up.local_port),
            )
        )
    sidecar = wl.sidecar.model_copy(
        update={
            "outbound_port": port(
                name, "outbound", wl.sidecar.outbound_port, DEFAULT_OUTBOUND_PORT
            ),
        }
    )
    return wl.model_copy(
        update={
            "name": name,
            "namespace": ns,
            "ports": ports,
            "port": None,
            "app_port": None,
            "replicas": 1,
            "service_account": wl.service_account or wl.service,
            "sidecar": sidecar,
            "upstreams": tuple(upstreams),
        }
    )
