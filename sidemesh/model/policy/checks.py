"""Checks of policies against the mesh they are written for: references that must
resolve, values Envoy would reject (a regex RE2 cannot compile, a per-try timeout
longer than the request's), and what is allowed but worth a warning (a backend that
does not exist, a subset selecting no workload, two routes that conflict).

Errors refuse the whole file; warnings are logged and shown in ``/v1/state``."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import re2

from sidemesh.errors import Problem
from sidemesh.model.addresses import is_address
from sidemesh.model.base import parse_duration
from sidemesh.model.mesh import Service, Workload
from sidemesh.model.policy.authorization import AuthorizationPolicy
from sidemesh.model.policy.backend import BackendPolicy
from sidemesh.model.policy.common import (
    SIDEMESH_GROUP,
    BackendRef,
    ParentRef,
    TargetRef,
    services_targeted,
)
from sidemesh.model.policy.documents import Policies, describe
from sidemesh.model.policy.external import ExternalService
from sidemesh.model.policy.routes import (
    FilterType,
    GRPCRoute,
    HTTPRoute,
    HTTPRouteFilter,
    HTTPRouteMatch,
    PathMatchType,
    StringMatchType,
)
from sidemesh.model.policy.telemetry import Telemetry
from sidemesh.model.refs import ServiceKey, as_spiffe_uri, parse_spiffe_id


@dataclass
class Findings:
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def check_policies(
    policies: Policies,
    where: Mapping[int, str],
    services: Mapping[ServiceKey, Service],
    workloads_of: Mapping[ServiceKey, Sequence[Workload]],
    trust_domain: str = "cluster.local",
) -> Findings:
    """``where``: id(policy) → how to name it in a message."""
    found = Findings()
    for route in policies.http_routes:
        _check_http_route(route, where[id(route)], services, policies, found)
    for grpc in policies.grpc_routes:
        _check_grpc_route(grpc, where[id(grpc)], services, found)
    targeted: dict[ServiceKey, str] = {}
    for policy in policies.backend_policies:
        _check_backend_policy(policy, where[id(policy)], services, workloads_of, targeted, found)
    found.warnings.extend(_route_conflicts(policies.http_routes, where))
    _check_external_services(policies.external_services, where, services, found)
    identities = {
        (w.namespace or "", w.service_account or "")
        for members in workloads_of.values()
        for w in members
    }
    for authz in policies.authorization_policies:
        _check_authorization(authz, where[id(authz)], services, identities, trust_domain, found)
    _check_telemetry(policies.telemetry, where, services, found)
    return found


def _check_service_targets(
    kind: str,
    target_refs: Sequence[TargetRef],
    namespace: str,
    label: str,
    services: Mapping[ServiceKey, Service],
    found: Findings,
) -> None:
    """A policy's targets must be services of its namespace that exist: one for a
    service that is not there applies to nothing and is most likely a typo."""
    article = "an" if kind[0] in "AEIOU" else "a"
    for i, target in enumerate(target_refs):
        at = f"{label} spec.targetRefs[{i}]"
        key = ServiceKey(target.name, namespace)
        if target.kind != "Service" or target.group != "":
            found.errors.append(
                Problem(f"{at}.kind", f"{article} {kind} targets a Service, not {target.kind!r}")
            )
        elif key not in services:
            found.errors.append(Problem(f"{at}.name", _unknown_service(key, services)))


def _check_telemetry(
    documents: Sequence[Telemetry],
    where: Mapping[int, str],
    services: Mapping[ServiceKey, Service],
    found: Findings,
) -> None:
    """Targets must be services that exist; two documents of the same reach (both
    naming a service, or both namespace-wide) may not both apply to one service: which
    one counted would depend on the order they were written in."""
    setting: dict[tuple[ServiceKey, bool], str] = {}
    for policy in documents:
        label = where[id(policy)]
        namespace = policy.metadata.namespace or ""
        _check_service_targets(
            policy.kind, policy.spec.target_refs, namespace, label, services, found
        )
        targeted = bool(policy.spec.target_refs)
        clashes: dict[str, list[str]] = {}
        for key in services_targeted(policy.metadata, policy.spec.target_refs, services):
            other = setting.get((key, targeted))
            if other is not None:
                clashes.setdefault(other, []).append(str(key))
            setting[(key, targeted)] = label
        for other, names in clashes.items():
            what = ", ".join(names) if targeted else f"every service of namespace {namespace!r}"
            found.errors.append(
                Problem(
                    f"{label} spec",
                    f"{other} also applies to {what}: keep one (a document naming a "
                    "service in targetRefs overrides a namespace-wide one)",
                )
            )


# --- routes -------------------------------------------------------------------------


def _check_parents(
    parents: Sequence[ParentRef],
    namespace: str,
    label: str,
    services: Mapping[ServiceKey, Service],
    gateways: Policies | None,
    found: Findings,
) -> None:
    """``gateways``: the policies holding the Gateways a route may attach to (None
    for a kind that attaches to Services only)."""
    for i, parent in enumerate(parents):
        at = f"{label} spec.parentRefs[{i}]"
        if parent.is_gateway and gateways is not None:
            _check_gateway_parent(parent, namespace, at, gateways, found)
            continue
        if parent.section_name is not None:
            found.warnings.append(
                Problem(f"{at}.sectionName", "not used: a route attaches to the whole Service")
            )
        if not parent.is_service:
            found.errors.append(
                Problem(
                    f"{at}.kind",
                    'a route attaches to a Service (kind: Service, group: "")'
                    + (" or a Gateway" if gateways is not None else "")
                    + f", not {parent.kind or 'Gateway'}",
                )
            )
            continue
        key = ServiceKey(parent.name, parent.namespace or namespace)
        service = services.get(key)
        if service is None:
            found.errors.append(Problem(f"{at}.name", _unknown_service(key, services)))
        elif parent.port is not None and parent.port not in {p.port for p in service.ports}:
            found.errors.append(
                Problem(
                    f"{at}.port",
                    f"{parent.port} is not a port of service {key} "
                    f"(ports: {', '.join(str(p.port) for p in service.ports)})",
                )
            )


def _check_gateway_parent(
    parent: ParentRef, namespace: str, at: str, policies: Policies, found: Findings
) -> None:
    gateway_ns = parent.namespace or namespace
    gateway = policies.gateway(gateway_ns, parent.name)
    if gateway is None:
        known = ", ".join(
            sorted(g.metadata.name for g in policies.gateways if g.metadata.namespace == gateway_ns)
        )
        found.errors.append(
            Problem(
                f"{at}.name",
                f"no Gateway {parent.name!r} in namespace {gateway_ns!r} "
                f"(Gateways: {known or 'none'})",
            )
        )
        return
    listeners = gateway.spec.listeners
    if parent.section_name is not None and parent.section_name not in {
        listener.name for listener in listeners
    }:
        found.errors.append(
            Problem(
                f"{at}.sectionName",
                f"Gateway {gateway_ns}/{parent.name} has no listener {parent.section_name!r} "
                f"(listeners: {', '.join(listener.name for listener in listeners)})",
            )
        )
    if parent.port is not None and parent.port not in {listener.port for listener in listeners}:
        found.errors.append(
            Problem(
                f"{at}.port",
                f"Gateway {gateway_ns}/{parent.name} has no listener on port {parent.port}",
            )
        )


def _check_backends(
    refs: Sequence[BackendRef],
    namespace: str,
    at: str,
    services: Mapping[ServiceKey, Service],
    found: Findings,
) -> None:
    for j, ref in enumerate(refs):
        if (ref.kind or "Service") != "Service" or (ref.group or "") != "":
            found.errors.append(
                Problem(f"{at}[{j}].kind", f"a backend is a Service, not {ref.kind!r}")
            )
            continue
        key = ServiceKey(ref.name, ref.namespace or namespace)
        service = services.get(key)
        if service is None:
            # The Gateway API accepts the route and answers this backend's share of
            # requests with 500: a typo must not take down the rest of the route.
            found.warnings.append(
                Problem(
                    f"{at}[{j}].name",
                    f"{_unknown_service(key, services)}; its share of requests is answered 500",
                )
            )
        elif ref.port is None and len(service.ports) > 1:
            found.errors.append(
                Problem(
                    f"{at}[{j}].port",
                    f"service {key} has {len(service.ports)} ports: name one",
                )
            )
        elif ref.port is not None and ref.port not in {p.port for p in service.ports}:
            found.errors.append(
                Problem(f"{at}[{j}].port", f"{ref.port} is not a port of service {key}")
            )


def _check_rule_backends(
    refs: Sequence[BackendRef],
    namespace: str,
    at: str,
    services: Mapping[ServiceKey, Service],
    found: Findings,
) -> None:
    """A rule's backends, of an HTTPRoute or a GRPCRoute: weights, then each one."""
    if refs and not any(r.weight for r in refs):
        found.errors.append(
            Problem(
                at,
                "every weight is 0, so no request could be sent anywhere: "
                "give at least one backend a weight",
            )
        )
    _check_backends(refs, namespace, at, services, found)


def _check_http_route(
    route: HTTPRoute,
    label: str,
    services: Mapping[ServiceKey, Service],
    policies: Policies,
    found: Findings,
) -> None:
    namespace = route.metadata.namespace or ""
    _check_parents(route.spec.parent_refs, namespace, label, services, policies, found)
    if not any(p.is_gateway for p in route.spec.parent_refs):
        _check_hostnames(route.spec.hostnames, label, found)
    for i, rule in enumerate(route.spec.rules):
        at = f"{label} spec.rules[{i}]"
        for j, match in enumerate(rule.matches):
            _check_match_regexes(match, f"{at}.matches[{j}]", found)
        refs = rule.backend_refs
        _check_rule_backends(refs, namespace, f"{at}.backendRefs", services, found)
        if any(p.is_gateway for p in route.spec.parent_refs):
            for j, ref in enumerate(refs):
                if ref.port is None:
                    # As the Gateway API requires of a Service backend.
                    found.errors.append(
                        Problem(
                            f"{at}.backendRefs[{j}].port", "a route on a Gateway names the port"
                        )
                    )
        _check_filters(rule.filters, namespace, f"{at}.filters", services, policies, found)
        for j, ref in enumerate(refs):
            _check_filters(
                ref.filters, namespace, f"{at}.backendRefs[{j}].filters", services, policies, found
            )
        redirects = any(f.type is FilterType.REQUEST_REDIRECT for f in rule.filters)
        if redirects and refs:
            found.errors.append(
                Problem(f"{at}.backendRefs", "a rule that redirects sends to no backend")
            )
        if rule.timeouts is not None:
            request, per_try = rule.timeouts.request, rule.timeouts.backend_request
            if request is not None and per_try is not None:
                total, each = parse_duration(request), parse_duration(per_try)
                if total and each > total:
                    found.errors.append(
                        Problem(
                            f"{at}.timeouts.backendRequest",
                            f"{per_try} is longer than the request timeout {request}: "
                            "a try cannot outlast the whole request",
                        )
                    )


def _check_filters(
    filters: Sequence[HTTPRouteFilter],
    namespace: str,
    at: str,
    services: Mapping[ServiceKey, Service],
    policies: Policies,
    found: Findings,
) -> None:
    for j, item in enumerate(filters):
        if item.type is FilterType.EXTENSION_REF and item.extension_ref is not None:
            ref = item.extension_ref
            if ref.group != SIDEMESH_GROUP or ref.kind != "FaultInjection":
                found.errors.append(
                    Problem(
                        f"{at}[{j}].extensionRef",
                        f"sidemesh knows one extension, FaultInjection ({SIDEMESH_GROUP}), "
                        f"not {ref.kind} ({ref.group})",
                    )
                )
            elif policies.fault(namespace, ref.name) is None:
                found.errors.append(
                    Problem(
                        f"{at}[{j}].extensionRef.name",
                        f"no FaultInjection {namespace}/{ref.name}",
                    )
                )
        if item.type is FilterType.REQUEST_MIRROR and item.request_mirror is not None:
            _check_backends(
                [item.request_mirror.backend_ref],
                namespace,
                f"{at}[{j}].requestMirror.backendRef",
                services,
                found,
            )


def _check_grpc_route(
    route: GRPCRoute, label: str, services: Mapping[ServiceKey, Service], found: Findings
) -> None:
    namespace = route.metadata.namespace or ""
    # Services only: a GRPCRoute on a Gateway is not served yet.
    _check_parents(route.spec.parent_refs, namespace, label, services, None, found)
    _check_hostnames(route.spec.hostnames, label, found)
    for i, rule in enumerate(route.spec.rules):
        at = f"{label} spec.rules[{i}]"
        for j, match in enumerate(rule.matches):
            method = match.method
            if method is not None and method.type is StringMatchType.REGULAR_EXPRESSION:
                for part, value in (("service", method.service), ("method", method.method)):
                    if value is not None:
                        _regex(value, f"{at}.matches[{j}].method.{part}", found)
        _check_rule_backends(rule.backend_refs, namespace, f"{at}.backendRefs", services, found)


def _check_hostnames(hostnames: Sequence[str], label: str, found: Findings) -> None:
    # GAMMA: for a Service parent the Service is the host; accepted, as the spec says,
    # but said so, since a reader may expect it to narrow the route.
    if hostnames:
        found.warnings.append(
            Problem(f"{label} spec.hostnames", "not used by a route whose parent is a Service")
        )


def _check_match_regexes(match: HTTPRouteMatch, at: str, found: Findings) -> None:
    if match.path is not None and match.path.type is PathMatchType.REGULAR_EXPRESSION:
        _regex(match.path.value, f"{at}.path.value", found)
    for k, header in enumerate(match.headers):
        if header.type is StringMatchType.REGULAR_EXPRESSION:
            _regex(header.value, f"{at}.headers[{k}].value", found)
    for k, param in enumerate(match.query_params):
        if param.type is StringMatchType.REGULAR_EXPRESSION:
            _regex(param.value, f"{at}.queryParams[{k}].value", found)


def _regex(pattern: str, at: str, found: Findings) -> None:
    """Compiled with RE2, the engine Envoy uses: Python's ``re`` accepts what Envoy
    refuses (backreferences, lookaround)."""
    try:
        re2.compile(pattern)
    except re2.error as exc:
        found.errors.append(Problem(at, f"{pattern!r} is not a valid RE2 regex: {exc}"))


def _route_conflicts(routes: Sequence[HTTPRoute], where: Mapping[int, str]) -> Iterator[Problem]:
    """Two rules of different routes on one parent with the very same match: only one
    can win. The Gateway API gives it to the older route, then the one first in
    alphabetical order (namespace/name); here routes have no creation time, so the
    alphabetical order decides."""
    claimed: dict[tuple[object, ...], tuple[str, str]] = {}
    ordered = sorted(routes, key=lambda r: (r.metadata.namespace or "", r.metadata.name))
    for route in ordered:
        for parent in route.spec.parent_refs:
            for i, rule in enumerate(route.spec.rules):
                for match in rule.effective_matches:
                    key = (
                        parent.name,
                        parent.namespace or route.metadata.namespace,
                        parent.port,
                        route.metadata.namespace,
                        match.effective_path,
                        match.method,
                        frozenset(match.headers),
                        frozenset(match.query_params),
                    )
                    mine = f"{where[id(route)]} spec.rules[{i}]"
                    if key in claimed and claimed[key][0] != describe(route):
                        winner = claimed[key][1]
                        yield Problem(
                            mine,
                            f"matches the same requests as {winner}, which wins "
                            "(routes are ordered by namespace/name when equally specific)",
                        )
                    else:
                        claimed.setdefault(key, (describe(route), mine))


# --- backend policies ---------------------------------------------------------------


def _check_backend_policy(
    policy: BackendPolicy,
    label: str,
    services: Mapping[ServiceKey, Service],
    workloads_of: Mapping[ServiceKey, Sequence[Workload]],
    targeted: dict[ServiceKey, str],
    found: Findings,
) -> None:
    namespace = policy.metadata.namespace or ""
    limit = policy.spec.rate_limit
    for j, route in enumerate(limit.routes if limit is not None else ()):
        _check_match_regexes(route.match, f"{label} spec.rateLimit.routes[{j}].match", found)
    for i, target in enumerate(policy.spec.target_refs):
        at = f"{label} spec.targetRefs[{i}]"
        if target.kind != "Service" or target.group != "":
            found.errors.append(
                Problem(f"{at}.kind", f"a BackendPolicy targets a Service, not {target.kind!r}")
            )
            continue
        key = ServiceKey(target.name, namespace)
        if key not in services:
            found.errors.append(Problem(f"{at}.name", _unknown_service(key, services)))
            continue
        if key in targeted:
            found.warnings.append(
                Problem(
                    at,
                    f"service {key} is also the target of {targeted[key]}, which wins "
                    "(policies are ordered by name)",
                )
            )
        else:
            targeted[key] = label
        if policy.spec.subsets:
            found.warnings.append(
                Problem(
                    f"{label} spec.subsets",
                    "checked but not applied yet: every workload of the service gets the "
                    "policy's top-level settings",
                )
            )
        members = workloads_of.get(key, ())
        known_keys = {k for w in members for k in w.labels}
        for j, subset in enumerate(policy.spec.subsets):
            sub_at = f"{label} spec.subsets[{j}].labels"
            unknown = sorted(set(subset.labels) - known_keys)
            if unknown:
                found.errors.append(
                    Problem(
                        sub_at,
                        f"no workload of {key} has the label {', '.join(map(repr, unknown))} "
                        f"(labels: {', '.join(sorted(known_keys)) or 'none'})",
                    )
                )
            elif not any(subset.labels.items() <= w.labels.items() for w in members):
                found.warnings.append(Problem(sub_at, f"selects no workload of {key} (yet)"))


# --- external services --------------------------------------------------------------


def _check_external_services(
    externals: Sequence[ExternalService],
    where: Mapping[int, str],
    services: Mapping[ServiceKey, Service],
    found: Findings,
) -> None:
    """A host and port is declared once, and never shadows a mesh service's name: a
    call to ``reviews`` must not leave the mesh because an ExternalService says so."""
    mesh_hosts = {
        host: str(key)
        for key in services
        for host in (key.name, f"{key.name}.{key.namespace}", f"{key.name}.{key.namespace}.svc")
    }
    claimed: dict[tuple[str, int], str] = {}
    for external in externals:
        label = where[id(external)]
        spec = external.spec
        for i, host in enumerate(spec.hosts):
            at = f"{label} spec.hosts[{i}]"
            if host in mesh_hosts:
                found.errors.append(
                    Problem(at, f"{host!r} is the name of mesh service {mesh_hosts[host]}")
                )
                continue
            for port in spec.ports:
                first = claimed.setdefault((host, port.port), label)
                if first != label:
                    found.errors.append(
                        Problem(at, f"{host}:{port.port} is also declared by {first}")
                    )
        numbers = [p.port for p in spec.ports]
        for i, number in enumerate(numbers):
            if number in numbers[:i]:
                found.errors.append(
                    Problem(f"{label} spec.ports[{i}].port", f"port {number} is listed twice")
                )
        for i, endpoint in enumerate(spec.endpoints):
            if not is_address(endpoint.address):
                found.errors.append(
                    Problem(
                        f"{label} spec.endpoints[{i}].address",
                        f"{endpoint.address!r} is neither an IP address nor a host name",
                    )
                )


# --- authorization --------------------------------------------------------------------


def _check_authorization(
    policy: AuthorizationPolicy,
    label: str,
    services: Mapping[ServiceKey, Service],
    identities: set[tuple[str, str]],
    trust_domain: str,
    found: Findings,
) -> None:
    """Targets must exist (a policy for a service that is not there protects nothing
    and is most likely a typo); principals, paths, CIDRs must be well formed; an
    identity or namespace no workload has yet is a warning (it may come)."""
    namespace = policy.metadata.namespace or ""
    _check_service_targets(policy.kind, policy.spec.target_refs, namespace, label, services, found)
    namespaces = {ns for ns, _ in identities} | {k.namespace for k in services}
    known = _Known(trust_domain, namespace, identities, namespaces)
    for i, rule in enumerate(policy.spec.rules or ()):
        at = f"{label} spec.rules[{i}]"
        for j, source in enumerate(f.source for f in rule.from_):
            for field_name, kind in _SOURCE_FIELDS:
                values = getattr(source, _snake(field_name))
                for k, value in enumerate(values):
                    at_value = f"{at}.from[{j}].source.{field_name}[{k}]"
                    _check_value(kind, value, at_value, known, found)
        for j, operation in enumerate(t.operation for t in rule.to):
            for field_name in ("paths", "notPaths"):
                for k, value in enumerate(getattr(operation, _snake(field_name))):
                    at_value = f"{at}.to[{j}].operation.{field_name}[{k}]"
                    _check_value("path", value, at_value, known, found)
        for j, condition in enumerate(rule.when):
            condition_kind = _CONDITION_KINDS.get(condition.key)
            if condition_kind is None:
                continue
            for field_name in ("values", "notValues"):
                for k, value in enumerate(getattr(condition, _snake(field_name))):
                    _check_value(
                        condition_kind, value, f"{at}.when[{j}].{field_name}[{k}]", known, found
                    )


@dataclass(frozen=True)
class _Known:
    """What a policy's values are checked against."""

    trust_domain: str
    namespace: str
    """The policy's own: a service account without one is in it."""
    identities: set[tuple[str, str]]
    namespaces: set[str]


_SOURCE_FIELDS = (
    ("principals", "principal"),
    ("notPrincipals", "principal"),
    ("serviceAccounts", "serviceAccount"),
    ("notServiceAccounts", "serviceAccount"),
    ("namespaces", "namespace"),
    ("notNamespaces", "namespace"),
    ("ipBlocks", "cidr"),
    ("notIpBlocks", "cidr"),
)
_CONDITION_KINDS = {
    "source.principal": "principal",
    "source.namespace": "namespace",
    "source.ip": "cidr",
    "destination.port": "port",
}


def _snake(camel: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel)


def _check_value(kind: str, value: str, at: str, known: _Known, found: Findings) -> None:
    """One value of a policy field, by what kind of value the field holds: an error if
    it can never mean anything, a warning if it names what does not exist yet."""
    if kind == "principal":
        _check_principal(value, at, known.trust_domain, known.identities, found)
    elif kind == "serviceAccount":
        ns, _, name = value.rpartition("/")
        if (ns or known.namespace, name) not in known.identities:
            found.warnings.append(
                Problem(at, f"no workload runs as {ns or known.namespace}/{name} (yet)")
            )
    elif kind == "namespace":
        if value not in known.namespaces:
            found.warnings.append(Problem(at, f"no namespace {value!r} in the mesh (yet)"))
    elif kind == "cidr":
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            found.errors.append(Problem(at, f"{value!r} is not an address or CIDR"))
    elif kind == "port":
        if not value.isdigit() or not 1 <= int(value) <= 65535:
            found.errors.append(Problem(at, f"{value!r} is not a port number (1-65535)"))
    elif kind == "path":
        problem = _path_problem(value)
        if problem is not None:
            found.errors.append(Problem(at, problem))


def _check_principal(
    value: str,
    at: str,
    trust_domain: str,
    identities: set[tuple[str, str]],
    found: Findings,
) -> None:
    if "*" in value.strip("*"):
        found.errors.append(Problem(at, f"{value!r}: '*' only at the start or the end"))
        return
    if "*" in value:
        return
    try:
        domain, namespace, account = parse_spiffe_id(as_spiffe_uri(value))
    except ValueError:
        found.errors.append(
            Problem(at, f"{value!r} is not an identity (<trust domain>/ns/<ns>/sa/<name>)")
        )
        return
    if domain != trust_domain:
        found.errors.append(
            Problem(
                at,
                f"{value!r} is of trust domain {domain!r}, the mesh's is {trust_domain!r}: "
                "it can never match",
            )
        )
    elif (namespace, account) not in identities:
        found.warnings.append(Problem(at, f"no workload runs as {namespace}/{account} (yet)"))


def _path_problem(path: str) -> str | None:
    if path == "*":
        return None
    if not (path.startswith("/") or path.startswith("*")):
        return f"{path!r} must start with '/' (or '*' for a suffix)"
    if "*" in path.strip("*"):
        return f"{path!r}: '*' only at the start or the end (use {{name}} for a segment)"
    if path.count("{") != path.count("}") or re.search(r"\{[^}]*[{/]", path):
        return f"{path!r}: a template segment is {{name}} or {{**}}"
    return None


def _unknown_service(key: ServiceKey, services: Mapping[ServiceKey, Service]) -> str:
    known = ", ".join(sorted(str(k) for k in services if k.namespace == key.namespace))
    return (
        f"{key.name!r} is not a service in namespace {key.namespace!r} "
        f"(services: {known or 'none'})"
    )
