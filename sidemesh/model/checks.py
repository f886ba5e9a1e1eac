"""Checks that need more than one field: references between services, workloads
and gateways, and ports that clash. Each problem names the field path as written in
mesh.yaml (``workloads[3].service``)."""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from sidemesh.errors import Problem
from sidemesh.model.addresses import parse_ip
from sidemesh.model.mesh import Gateway, MeshDocument, Service, Workload
from sidemesh.model.refs import ServiceKey
from sidemesh.model.resolve import Resolved, replica_names

TEMPLATE_FIELDS = ("port", "workload", "service", "version", "namespace")


def check_document(doc: MeshDocument, *, local: bool) -> Iterator[Problem]:
    """``local``: ``sidemesh up`` runs the workloads, so it picks missing ports and
    needs each workload's command."""
    default_ns = doc.mesh.default_namespace
    services: dict[ServiceKey, Service] = {}
    for i, svc in enumerate(doc.services):
        key = ServiceKey(svc.name, svc.namespace or default_ns)
        if key in services:
            yield Problem(f"services[{i}].name", f"duplicate service {key}")
        services[key] = svc
        yield from _duplicates(
            f"services[{i}].ports", "port", [p.port for p in svc.ports], "port number"
        )
        yield from _duplicates(
            f"services[{i}].ports", "name", [p.port_name for p in svc.ports], "port name"
        )

    proxies: dict[tuple[str, str], str] = {}
    for i, wl in enumerate(doc.workloads):
        where = f"workloads[{i}]"
        ns = wl.namespace or default_ns
        for name in replica_names(wl):
            if (name, ns) in proxies:
                yield Problem(
                    f"{where}.name",
                    f"duplicate workload {name!r} in namespace {ns!r} (also {proxies[(name, ns)]})",
                )
            proxies[(name, ns)] = where
        found = services.get(ServiceKey(wl.service, ns))
        if found is None:
            yield Problem(f"{where}.service", _unknown_service(wl.service, ns, services))
            continue
        yield from _check_workload_ports(where, wl, found, local=local)
        yield from _check_upstreams(where, wl, ns, services)
        yield from _check_calls(where, wl, ns, services)
        if local:
            yield from _check_command(where, wl)
        if wl.replicas > 1 and _has_pinned_ports(wl):
            yield Problem(
                f"{where}.replicas",
                f"{wl.replicas} replicas cannot share pinned ports: leave the ports out "
                "and sidemesh up picks free ones",
            )

    for i, gw in enumerate(doc.gateways):
        where = f"gateways[{i}]"
        ns = gw.namespace or default_ns
        if (gw.name, ns) in proxies:
            yield Problem(f"{where}.name", f"{gw.name!r} is already {proxies[(gw.name, ns)]}")
        proxies[(gw.name, ns)] = where
        yield from _check_gateway(where, gw, ns, services)


def check_ports(resolved: Resolved, reserved: Mapping[int, str] | None = None) -> Iterator[Problem]:
    """No two listeners on one address and port, across workloads, their sidecars,
    upstream ports and gateways; and none on a port of ``reserved`` (port → what holds
    it) on the control plane's host.

    Which workloads share the control plane's host is not known here: an address is
    taken to stand for its workload's host, and only a loopback one (127.0.0.0/8, ::1)
    or a wildcard one (0.0.0.0, ::, which binds loopback too) is counted as the control
    plane's. That is every workload of local mode, where a clash would stop a sidecar
    or the control plane from binding; a workload at another address may run on
    another host, where the port is free, so refusing it would be a false alarm."""
    bound: dict[tuple[str, int], str] = {}
    for field_path, address, port in _bound_ports(resolved):
        other = bound.get((address, port))
        if other is not None:
            yield Problem(field_path, f"port {port} on {address} is already used by {other}")
        else:
            bound[(address, port)] = field_path
        holder = (reserved or {}).get(port)
        if holder is not None and _on_control_plane_host(address):
            yield Problem(
                field_path, f"port {port} on {address} clashes with {holder}: pick another"
            )


def _on_control_plane_host(address: str) -> bool:
    ip = parse_ip(address)
    return ip is not None and (ip.is_loopback or ip.is_unspecified)


def _unknown_service(name: str, ns: str, services: dict[ServiceKey, Service]) -> str:
    known = ", ".join(sorted(str(k) for k in services)) or "none"
    return f"{name!r} is not a service in namespace {ns!r} (services: {known})"


def _duplicates(where: str, field: str, values: list[Any], what: str) -> Iterator[Problem]:
    for value, count in Counter(values).items():
        if count > 1:
            idx = [i for i, v in enumerate(values) if v == value][1]
            yield Problem(f"{where}[{idx}].{field}", f"duplicate {what} {value!r}")


def _check_workload_ports(
    where: str, wl: Workload, svc: Service, *, local: bool
) -> Iterator[Problem]:
    shorthand = wl.port is not None or wl.app_port is not None
    if shorthand and wl.ports:
        yield Problem(where, "give either port/appPort or ports, not both")
        return
    if shorthand:
        if wl.port is None or wl.app_port is None:
            missing = "appPort" if wl.app_port is None else "port"
            yield Problem(
                f"{where}.{missing}", "required field is missing (port and appPort go together)"
            )
        if len(svc.ports) > 1:
            yield Problem(
                f"{where}.port",
                f"service {svc.name!r} has {len(svc.ports)} ports: list each under 'ports'",
            )
        return
    if not wl.ports:
        if not local:
            yield Problem(
                where,
                "give the workload's port and appPort (or 'ports' per service port); "
                "only sidemesh up picks them itself",
            )
        return
    names = {p.port_name for p in svc.ports}
    for j, wp in enumerate(wl.ports):
        if wp.name not in names:
            yield Problem(
                f"{where}.ports[{j}].name",
                f"{wp.name!r} is not a port of service {svc.name!r} "
                f"(ports: {', '.join(sorted(names))})",
            )
    yield from _duplicates(f"{where}.ports", "name", [p.name for p in wl.ports], "port name")


def _check_upstreams(
    where: str, wl: Workload, ns: str, services: dict[ServiceKey, Service]
) -> Iterator[Problem]:
    for j, up in enumerate(wl.upstreams):
        target = services.get(ServiceKey(up.service, ns))
        if target is None:
            yield Problem(
                f"{where}.upstreams[{j}].service", _unknown_service(up.service, ns, services)
            )
        elif up.port is not None and up.port not in {p.port for p in target.ports}:
            yield Problem(
                f"{where}.upstreams[{j}].port",
                f"{up.port} is not a port of service {up.service!r} "
                f"(ports: {', '.join(str(p.port) for p in target.ports)})",
            )


def _check_calls(
    where: str, wl: Workload, ns: str, services: dict[ServiceKey, Service]
) -> Iterator[Problem]:
    for j, key in enumerate(wl.called(ns)):
        if key not in services:
            yield Problem(
                f"{where}.calls[{j}]", _unknown_service(key.name, key.namespace, services)
            )


def _check_command(where: str, wl: Workload) -> Iterator[Problem]:
    if not wl.command:
        yield Problem(f"{where}.command", "required field is missing (sidemesh up runs it)")
        return
    texts = [wl.command] if isinstance(wl.command, str) else list(wl.command)
    texts += list(wl.env.values())
    for text in texts:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
        except ValueError as exc:
            yield Problem(f"{where}.command", f"bad template {text!r}: {exc}")
            continue
        for name in fields:
            if name not in TEMPLATE_FIELDS:
                yield Problem(
                    f"{where}.command",
                    f"unknown placeholder {{{name}}} in {text!r} "
                    f"(known: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)})",
                )


def _has_pinned_ports(wl: Workload) -> bool:
    return bool(
        wl.port
        or wl.app_port
        or wl.ports
        or wl.sidecar.outbound_port
        or any(u.local_port for u in wl.upstreams)
    )


def _check_gateway(
    where: str, gw: Gateway, ns: str, services: dict[ServiceKey, Service]
) -> Iterator[Problem]:
    if not gw.routes:
        yield Problem(
            f"{where}.routes",
            "a gateway needs at least one route (or write a Gateway API Gateway document)",
        )
    for j, route in enumerate(gw.routes):
        target = services.get(ServiceKey(route.service, ns))
        if target is None:
            yield Problem(
                f"{where}.routes[{j}].service", _unknown_service(route.service, ns, services)
            )
            continue
        http_ports = [p.port for p in target.ports if p.protocol.is_http]
        if route.port is not None and route.port not in http_ports:
            yield Problem(
                f"{where}.routes[{j}].port",
                f"{route.port} is not an HTTP port of service {route.service!r}",
            )
        elif not http_ports:
            yield Problem(
                f"{where}.routes[{j}].service", f"service {route.service!r} has no HTTP port"
            )


def _bound_ports(resolved: Resolved) -> Iterator[tuple[str, str, int]]:
    """Every port a workload, its sidecar or a gateway listens on, with the field
    that set it. Sidecar and app ports are on the loopback of the workload's host,
    which the workload's address stands for."""
    doc = resolved.document
    for wl in doc.workloads:
        where = resolved.origin[wl.name]
        for j, wp in enumerate(wl.ports):
            prefix = f"{where}.ports[{j}]" if len(wl.ports) > 1 else where
            if not wl.sidecar.capture:  # a captured sidecar binds its capture port
                yield f"{prefix}.port", wl.address, wp.port
            yield f"{prefix}.appPort", wl.address, wp.app_port
        assert wl.sidecar.outbound_port is not None
        yield f"{where}.sidecar.outboundPort", wl.address, wl.sidecar.outbound_port
        for j, up in enumerate(wl.upstreams):
            assert up.local_port is not None
            yield f"{where}.upstreams[{j}].localPort", wl.address, up.local_port
    for gw in doc.gateways:
        where = resolved.origin[gw.name]
        yield f"{where}.port", gw.address, gw.port
