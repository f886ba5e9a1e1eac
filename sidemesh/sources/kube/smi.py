"""SMI (Service Mesh Interface) objects, for users coming from OSM or Traefik Mesh, into
the documents sidemesh takes: pure, no I/O.

SMI is archived; its successor for meshes is the Gateway API (GAMMA). So each object
is served as its equivalent, and the source logs that equivalent once, for the user to
apply instead:

- ``TrafficSplit`` (split.smi-spec.io/v1alpha4) → an ``HTTPRoute`` whose parent is the
  split's root Service and whose backends are its weighted backends; with ``matches``
  (HTTPRouteGroups), only matching requests are split and the rest go to the root;
- ``TrafficTarget`` (access.smi-spec.io/v1alpha3) → an ALLOW ``AuthorizationPolicy``
  on each Service whose pods run as the destination service account, allowing its
  sources' service accounts the requests its HTTPRouteGroup matches name;
- ``HTTPRouteGroup`` (specs.smi-spec.io/v1alpha4) is what the other two refer to.

An SMI path is a regular expression; an AuthorizationPolicy path is exact, prefix or
suffix. A regex that is none of those cannot be allowed faithfully, so that match is
left out (allowing less, never more) with a warning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidemesh.sources.kube.convert import CONVERTED_FROM

Object = Mapping[str, Any]
SPLIT = ("split.smi-spec.io", "TrafficSplit")
TARGET = ("access.smi-spec.io", "TrafficTarget")
ROUTE_GROUP = ("specs.smi-spec.io", "HTTPRouteGroup")

ServicesRunningAs = Callable[[str, str], list[str]]
"""(namespace, service account) → the Services whose pods run as it."""


@dataclass
class Converted:
    documents: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def kind_of(obj: Object) -> tuple[str, str]:
    return (str(obj.get("apiVersion", "")).split("/", 1)[0], str(obj.get("kind", "")))


def convert(objects: Iterable[Object], services_running_as: ServicesRunningAs) -> Converted:
    objects = list(objects)
    groups = {(_ns(o), _name(o)): o for o in objects if kind_of(o) == ROUTE_GROUP}
    out = Converted()
    for obj in objects:
        if kind_of(obj) == SPLIT:
            out.documents.append(_split(obj, groups, out.warnings))
        elif kind_of(obj) == TARGET:
            doc = _target(obj, groups, services_running_as, out.warnings)
            if doc is not None:
                out.documents.append(doc)
    return out


def _meta(obj: Object, prefix: str = "smi-") -> dict[str, Any]:
    return {
        "name": f"{prefix}{_name(obj)}"[:63],
        "namespace": _ns(obj),
        "annotations": {CONVERTED_FROM: f"{obj.get('kind')} {_ns(obj)}/{_name(obj)}"},
    }


def _split(
    obj: Object, groups: Mapping[tuple[str, str], Object], warnings: list[str]
) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    root = spec.get("service")
    backends = [
        {"name": b.get("service"), "weight": b.get("weight", 0)} for b in spec.get("backends") or []
    ]
    rules: list[dict[str, Any]] = []
    matches = [
        m
        for ref in spec.get("matches") or []
        for m in _group_matches(obj, ref, groups, warnings, route_matches=True)
    ]
    if matches:
        rules.append({"matches": matches, "backendRefs": backends})
        rules.append({"backendRefs": [{"name": root}]})  # what the split does not match
    else:
        rules.append({"backendRefs": backends})
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": _meta(obj),
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": root}], "rules": rules},
    }


def _target(
    obj: Object,
    groups: Mapping[tuple[str, str], Object],
    services_running_as: ServicesRunningAs,
    warnings: list[str],
) -> dict[str, Any] | None:
    spec = obj.get("spec") or {}
    where = f"TrafficTarget {_ns(obj)}/{_name(obj)}"
    destination = spec.get("destination") or {}
    namespace = destination.get("namespace") or _ns(obj)
    services = services_running_as(namespace, str(destination.get("name")))
    if not services:
        warnings.append(
            f"{where}: no Service has pods running as {namespace}/{destination.get('name')} "
            "(yet); nothing to allow"
        )
        return None
    sources = [
        f"{s.get('namespace') or _ns(obj)}/{s.get('name')}"
        for s in spec.get("sources") or []
        if s.get("kind", "ServiceAccount") == "ServiceAccount"
    ]
    operations: list[dict[str, Any]] = []
    for rule in spec.get("rules") or []:
        if rule.get("kind") != "HTTPRouteGroup":
            warnings.append(f"{where}: {rule.get('kind')} rules are not converted (HTTP only)")
            continue
        wanted = set(rule.get("matches") or [])
        for match in _group_matches(obj, rule, groups, warnings, route_matches=False):
            name = match.pop("_name")
            if not wanted or name in wanted:
                operations.append(match)
    rule_out: dict[str, Any] = {"from": [{"source": {"serviceAccounts": sources}}]}
    if operations:
        rule_out["to"] = [{"operation": op} for op in operations]
    return {
        "apiVersion": "sidemesh.io/v1alpha1",
        "kind": "AuthorizationPolicy",
        "metadata": {**_meta(obj), "namespace": namespace},
        "spec": {
            "targetRefs": [{"group": "", "kind": "Service", "name": s} for s in services],
            "action": "ALLOW",
            "rules": [rule_out],
        },
    }


def _group_matches(
    obj: Object,
    ref: Object,
    groups: Mapping[tuple[str, str], Object],
    warnings: list[str],
    route_matches: bool,
) -> list[dict[str, Any]]:
    where = f"{obj.get('kind')} {_ns(obj)}/{_name(obj)}"
    group = groups.get((_ns(obj), str(ref.get("name"))))
    if group is None:
        warnings.append(f"{where}: HTTPRouteGroup {_ns(obj)}/{ref.get('name')} does not exist")
        return []
    out: list[dict[str, Any]] = []
    for match in (group.get("spec") or {}).get("matches") or []:
        methods = [m for m in match.get("methods") or [] if m != "*"]
        regex = str(match.get("pathRegex") or "")
        headers = [
            {"type": "Exact", "name": name, "value": str(value)}
            for name, value in (match.get("headers") or {}).items()
        ]
        if route_matches:
            base: dict[str, Any] = {}
            if regex and regex not in (".*", "/.*"):
                base["path"] = {"type": "RegularExpression", "value": regex}
            if headers:
                base["headers"] = headers
            out += [{**base, "method": m} for m in methods] or [base]
            continue
        path = path_pattern(regex)
        if path is None:
            warnings.append(
                f"{where}: pathRegex {regex!r} of match {match.get('name')!r} is not an exact, "
                "prefix or suffix path; the match is left out (allowing less, not more)"
            )
            continue
        operation: dict[str, Any] = {"_name": match.get("name")}
        if path:
            operation["paths"] = [path]
        if methods:
            operation["methods"] = methods
        out.append(operation)
    return out


_META = re.compile(r"[.^$*+?()\[\]{}|\\]")


def path_pattern(regex: str) -> str | None:
    """An SMI ``pathRegex`` as an AuthorizationPolicy path: ``""`` for any path, None
    where no exact, prefix or suffix path says the same."""
    body = regex.removeprefix("^").removesuffix("$")
    if body in ("", ".*", "/.*"):
        return ""
    if not _META.search(body):
        return body
    for wildcard in (".*", "/.*"):
        if body.endswith(wildcard) and not _META.search(body[: -len(wildcard)]):
            return body[: -len(wildcard)] + ("/*" if wildcard == "/.*" else "*")
    if body.startswith(".*") and not _META.search(body[2:]):
        return "*" + body[2:]
    return None


def _name(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _ns(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "default")
