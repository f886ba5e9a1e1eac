"""Loading mesh.yaml into a ``MeshState``, with errors that name the file, the field
path and the reason, and report every problem at once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sidemesh.errors import ConfigError, Problem
from sidemesh.model.mesh import MeshDocument, Service, Workload, WorkloadPort
from sidemesh.model.state import MeshState, ServiceKey, service_key


def load_mesh_file(path: Path | str, version: int = 1) -> MeshState:
    """Read and validate a mesh.yaml. Raises ``ConfigError`` naming ``path``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [Problem("", f"cannot read file: {exc.strerror}")]) from exc
    return parse_mesh_document(text, source, version)


def parse_mesh_document(text: str, source: str, version: int = 1) -> MeshState:
    """Validate mesh.yaml text; ``source`` is the name used in error messages."""
    raw = _parse_yaml(text, source)
    try:
        document = MeshDocument.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, _problems_from_pydantic(exc.errors())) from exc
    problems = list(_check_references(document))
    if problems:
        raise ConfigError(source, problems)
    return _to_state(document, version)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping with the same key twice (plain YAML keeps
    the last one silently, which hides typos)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,
)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        raw = yaml.load(
            text, Loader=_UniqueKeyLoader
        )  # a SafeLoader subclass: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(source, [Problem(where, f"invalid YAML: {exc.problem}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(source, [Problem("", f"invalid YAML: {exc}")]) from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(source, [Problem("", "the top level must be a mapping")])
    return raw


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _problems_from_pydantic(errors: list[Any]) -> list[Problem]:
    # A list whose items failed also reports itself "too short" (it counts only the
    # valid items); the item errors say what is really wrong, so drop that echo.
    locs = [tuple(e["loc"]) for e in errors]
    return [
        _problem_from_pydantic(e)
        for e in errors
        if not (
            e["type"] == "too_short"
            and any(
                len(other) > len(e["loc"]) and other[: len(e["loc"])] == tuple(e["loc"])
                for other in locs
            )
        )
    ]


def _problem_from_pydantic(error: Any) -> Problem:
    path = _format_loc(tuple(error["loc"]))
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "enum":
        allowed = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return Problem(path, f"{error['input']!r} is not one of {allowed}")
    if kind == "extra_forbidden":
        return Problem(path, "unknown field (check its spelling and indentation)")
    if kind == "missing":
        return Problem(path, "required field is missing")
    if kind == "string_pattern_mismatch":
        return Problem(
            path,
            f"{error['input']!r} is not a valid name "
            "(lowercase letters, digits and '-', starting and ending with a letter or digit)",
        )
    return Problem(path, str(error["msg"]))


def _check_references(doc: MeshDocument) -> Iterator[Problem]:
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

    seen_workloads: set[tuple[str, str]] = set()
    bound: dict[tuple[str, int], str] = {}
    for i, wl in enumerate(doc.workloads):
        where = f"workloads[{i}]"
        ns = wl.namespace or default_ns
        if (wl.name, ns) in seen_workloads:
            yield Problem(f"{where}.name", f"duplicate workload {wl.name!r} in namespace {ns!r}")
        seen_workloads.add((wl.name, ns))
        found = services.get(ServiceKey(wl.service, ns))
        if found is None:
            known = ", ".join(sorted(str(k) for k in services)) or "none"
            yield Problem(
                f"{where}.service",
                f"{wl.service!r} is not a service in namespace {ns!r} (services: {known})",
            )
            continue
        svc = found
        ports_problems = list(_check_workload_ports(where, wl, svc))
        yield from ports_problems
        if ports_problems:
            continue
        for field_path, address, port in _bound_ports(where, wl, svc):
            other = bound.get((address, port))
            if other is not None:
                yield Problem(field_path, f"port {port} on {address} is already used by {other}")
            else:
                bound[(address, port)] = field_path


def _duplicates(where: str, field: str, values: list[Any], what: str) -> Iterator[Problem]:
    for value, count in Counter(values).items():
        if count > 1:
            idx = [i for i, v in enumerate(values) if v == value][1]
            yield Problem(f"{where}[{idx}].{field}", f"duplicate {what} {value!r}")


def _check_workload_ports(where: str, wl: Workload, svc: Service) -> Iterator[Problem]:
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
        yield Problem(where, "give the workload's port and appPort (or 'ports' per service port)")
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


def _bound_ports(where: str, wl: Workload, svc: Service) -> Iterator[tuple[str, str, int]]:
    """Every port a workload and its sidecar listen on, with the field that set it.
    Sidecar and app ports are on the loopback of the workload's host, which the
    workload's address stands for."""
    for j, wp in enumerate(_resolved_ports(wl, svc)):
        prefix = f"{where}.ports[{j}]" if wl.ports else where
        yield f"{prefix}.port", wl.address, wp.port
        yield f"{prefix}.appPort", wl.address, wp.app_port
    yield f"{where}.sidecar.outboundPort", wl.address, wl.sidecar.outbound_port
    yield f"{where}.sidecar.adminPort", wl.address, wl.sidecar.admin_port


def _resolved_ports(wl: Workload, svc: Service) -> tuple[WorkloadPort, ...]:
    if wl.ports:
        return wl.ports
    assert wl.port is not None and wl.app_port is not None
    return (WorkloadPort(name=svc.ports[0].port_name, port=wl.port, app_port=wl.app_port),)


def _to_state(doc: MeshDocument, version: int) -> MeshState:
    default_ns = doc.mesh.default_namespace
    services = {}
    for svc in doc.services:
        svc = svc.model_copy(update={"namespace": svc.namespace or default_ns})
        services[service_key(svc)] = svc
    workloads = {}
    for wl in doc.workloads:
        ns = wl.namespace or default_ns
        svc = services[ServiceKey(wl.service, ns)]
        normalized = wl.model_copy(
            update={
                "namespace": ns,
                "ports": _resolved_ports(wl, svc),
                "port": None,
                "app_port": None,
                "service_account": wl.service_account or wl.service,
            }
        )
        workloads[(wl.name, ns)] = normalized
    return MeshState(version=version, mesh=doc.mesh, services=services, workloads=workloads)
