"""What a request from one workload to a service gets, found by evaluating the very
Envoy configuration translation produces for the two proxies: the caller's route (which
rule, backends and weights, timeout, retries) and, at each backend, the callee's token
check and authorization (which policy and rule decided). Evaluating the translated
config, not the policies, is what keeps the answer and Envoy in agreement.

Owns: a small evaluator of the Envoy matchers translation uses (route matches, header
and string matchers, RBAC permissions and principals, JWT requirements by presence),
and the path normalization the callee's connection manager applies first.
Must not: verify tokens (a token's claims are taken as given: ``explain`` answers what
happens to a request carrying them) or talk to a running mesh.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import re2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.rbac.v3 import rbac_pb2 as rbac_config_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import string_pb2, value_pb2

from sidemesh.envoy import names
from sidemesh.envoy.filters import HCM_FILTER, JWT_AUTHN_FILTER, RBAC_FILTER
from sidemesh.envoy.proxy import ProxyId
from sidemesh.envoy.resources import ResourceType
from sidemesh.envoy.translator import Translator
from sidemesh.model import MeshState, ServiceKey

_CLUSTER = re.compile(r"^outbound\|(\d+)\|[^|]*\|([^.]+)\.(.+)$")
_UNRESERVED = re.compile(r"%(4[1-9A-F]|5[0-9A]|6[1-9A-F]|7[0-9A]|3[0-9]|2D|2E|5F|7E)", re.I)


@dataclass(frozen=True)
class Request:
    caller: str
    """The calling workload (``name`` in the caller namespace)."""
    host: str
    """The Host the app sends (``reviews``, ``reviews.default:9080``)."""
    method: str = "GET"
    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=dict)
    claims: Mapping[str, Any] | None = None
    """A token's claims, or None for a request without one."""
    namespace: str = "default"
    authority: str | None = None
    """The Host the callee sees, if not ``host`` (an upstream port passes the app's
    Host on as it was sent)."""


@dataclass
class Backend:
    service: str
    port: int
    weight: int
    status: int | None = None
    """What the callee answers itself (401, 403, 400), or None: its app serves."""
    decision: str = ""
    audited_by: list[str] = field(default_factory=list)


@dataclass
class Explanation:
    route: str | None = None
    virtual_host: str | None = None
    status: int | None = None
    """What the caller's sidecar answers itself (404, 500, a redirect, a fault's
    abort is not predicted), or None: the request goes to ``backends``."""
    detail: str = ""
    timeout_s: float | None = None
    retry: dict[str, Any] = field(default_factory=dict)
    backends: list[Backend] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "virtualHost": self.virtual_host,
            "status": self.status,
            "detail": self.detail,
            "timeoutSeconds": self.timeout_s,
            "retry": self.retry,
            "backends": [
                {
                    "service": b.service,
                    "port": b.port,
                    "weight": b.weight,
                    "status": b.status or 200,
                    "decision": b.decision,
                    "auditedBy": b.audited_by,
                }
                for b in self.backends
            ],
        }


def explain(
    state: MeshState, request: Request, translator: Translator | None = None
) -> Explanation:
    translator = translator or Translator()
    caller = translator.for_proxy(state, ProxyId(request.caller, request.namespace))
    (route_config,) = caller[ResourceType.ROUTE].values()
    out = Explanation()
    host = _virtual_host(route_config.message, request.host)
    if host is None:
        out.status, out.detail = 404, "no service or external host has this name"
        return out
    out.virtual_host = host.name
    path, _, query = request.path.partition("?")
    headers = {k.lower(): v for k, v in request.headers.items()}
    route = next(
        (r for r in host.routes if _route_matches(r.match, request.method, path, query, headers)),
        None,
    )
    if route is None:
        out.status, out.detail = 404, "no rule of the service's routes matches"
        return out
    out.route = route.name
    if route.HasField("redirect"):
        out.status = {0: 301, 1: 302, 2: 303, 3: 307, 4: 308}[route.redirect.response_code]
        out.detail = "redirected by the route"
        return out
    if route.HasField("direct_response"):
        out.status = route.direct_response.status
        out.detail = route.direct_response.body.inline_string.strip() or "answered by the route"
        return out
    action = route.route
    out.timeout_s = action.timeout.ToNanoseconds() / 1e9
    if action.HasField("retry_policy"):
        out.retry = {
            "on": action.retry_policy.retry_on,
            "attempts": action.retry_policy.num_retries.value,
        }
    clusters = (
        [(c.name, c.weight.value) for c in action.weighted_clusters.clusters]
        if action.HasField("weighted_clusters")
        else [(action.cluster, 1)]
    )
    for cluster, weight in clusters:
        match = _CLUSTER.match(cluster)
        if match is None:
            out.backends.append(Backend(cluster, 0, weight, decision="leaves the mesh"))
            continue
        key = ServiceKey(match.group(2), match.group(3))
        backend = Backend(str(key), int(match.group(1)), weight)
        _at_callee(state, translator, key, backend, request, path, query, headers)
        out.backends.append(backend)
    return out


# --- the caller's routes ------------------------------------------------------------------


def _virtual_host(
    config: route_pb2.RouteConfiguration, host: str
) -> route_components_pb2.VirtualHost | None:
    host = host.lower()
    for vhost in config.virtual_hosts:
        if host in vhost.domains:
            return vhost
    for vhost in config.virtual_hosts:
        if any(d.startswith("*") and d != "*" and host.endswith(d[1:]) for d in vhost.domains):
            return vhost
    return next((v for v in config.virtual_hosts if "*" in v.domains), None)


def _route_matches(
    match: route_components_pb2.RouteMatch,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
) -> bool:
    kind = match.WhichOneof("path_specifier")
    if kind == "prefix" and not path.startswith(match.prefix):
        return False
    if kind == "path" and path != match.path:
        return False
    if kind == "path_separated_prefix":
        prefix = match.path_separated_prefix
        if not (path == prefix or path.startswith(prefix + "/")):
            return False
    if kind == "safe_regex" and re2.fullmatch(match.safe_regex.regex, path) is None:
        return False
    everything = {**headers, ":method": method, ":path": path}
    if not all(_header_matches(h, everything) for h in match.headers):
        return False
    params = dict(p.partition("=")[::2] for p in query.split("&") if p)
    for param in match.query_parameters:
        value = params.get(param.name)
        if param.present_match:
            if value is None:
                return False
        elif value is None or not _string_matches(param.string_match, value):
            return False
    return True


# --- the callee's side ----------------------------------------------------------------------


def _at_callee(
    state: MeshState,
    translator: Translator,
    key: ServiceKey,
    backend: Backend,
    request: Request,
    path: str,
    query: str,
    headers: Mapping[str, str],
) -> None:
    members = tuple(w for w in state.workloads_of(key) if w.ready)
    if not members:
        backend.status, backend.decision = 503, "no workload serves it"
        return
    callee = members[0]
    resources = translator.for_proxy(state, ProxyId(callee.name, callee.namespace or ""))
    listener = resources[ResourceType.LISTENER].get(names.inbound_listener(key, backend.port))
    hcm = _connection_manager(listener.message) if listener is not None else None
    if hcm is None:
        backend.decision = "served (no HTTP checks on this port)"
        return
    refused = _refused_path(path, headers)
    if refused:
        backend.status, backend.decision = 400, refused
        return
    normalized = normalize_path(path)
    caller = state.workload(request.caller, request.namespace)
    principal = state.spiffe_id(caller) if caller is not None else None
    facts = _Facts(
        principal=principal,
        path=normalized,
        headers={
            **headers,
            ":method": request.method.upper(),
            ":authority": request.authority or request.host,
            ":path": normalized + (f"?{query}" if query else ""),
        },
        claims=request.claims,
        address=caller.address if caller is not None else "127.0.0.1",
    )
    checked = False
    for http_filter in hcm.http_filters:
        if http_filter.name == JWT_AUTHN_FILTER:
            jwt = jwt_pb2.JwtAuthentication()
            http_filter.typed_config.Unpack(jwt)
            if request.claims is None and not _missing_allowed(jwt):
                backend.status, backend.decision = 401, "no token, and one is required"
                return
            if request.claims is not None and not _issuer_known(jwt, request.claims):
                backend.status, backend.decision = 401, "the token's issuer is not accepted"
                return
        elif http_filter.name == RBAC_FILTER:
            rbac = rbac_pb2.RBAC()
            http_filter.typed_config.Unpack(rbac)
            checked = True
            verdict = _rbac(rbac.rules, facts)
            if rbac.rules.action == rbac_config_pb2.RBAC.LOG:
                backend.audited_by += verdict
            elif rbac.rules.action == rbac_config_pb2.RBAC.DENY and verdict:
                backend.status, backend.decision = 403, f"denied by {verdict[0]}"
                return
            elif rbac.rules.action == rbac_config_pb2.RBAC.ALLOW:
                if not verdict:
                    backend.status = 403
                    backend.decision = (
                        "denied: no ALLOW rule matches"
                        if rbac.rules.policies
                        else "denied: the mesh denies by default and no policy allows it"
                    )
                    return
                backend.decision = f"allowed by {verdict[0]}"
    if not backend.decision:
        backend.decision = (
            "allowed: no DENY rule matches, and no ALLOW policy applies"
            if checked
            else "allowed: no authorization policy applies"
        )


def _connection_manager(listener: listener_pb2.Listener) -> hcm_pb2.HttpConnectionManager | None:
    for chain in listener.filter_chains:
        for flt in chain.filters:
            if flt.name == HCM_FILTER:
                hcm = hcm_pb2.HttpConnectionManager()
                flt.typed_config.Unpack(hcm)
                return hcm
    return None


def _refused_path(path: str, headers: Mapping[str, str]) -> str | None:
    lowered = path.lower()
    if "%2f" in lowered or "%5c" in lowered:
        return "refused: an encoded slash or backslash in the path"
    if "%00" in lowered:
        return "refused: an encoded NUL in the path"
    if "#" in path:
        return "refused: a fragment in the path"
    if any("_" in name for name in headers):
        return "refused: a header name with an underscore"
    return None


def normalize_path(path: str) -> str:
    """As the callee's connection manager: unreserved characters decoded, dot segments
    removed (RFC 3986), repeated slashes merged."""
    path = _UNRESERVED.sub(lambda m: unquote(m.group(0)), path)
    out: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if out:
                out.pop()
        elif segment not in (".", ""):
            out.append(segment)
    trailing = path.endswith("/") and out
    return "/" + "/".join(out) + ("/" if trailing else "")


def _missing_allowed(jwt: jwt_pb2.JwtAuthentication) -> bool:
    for rule in jwt.rules:
        requires = rule.requires
        if requires.HasField("allow_missing"):
            return True
        if any(r.HasField("allow_missing") for r in requires.requires_any.requirements):
            return True
    return False


def _issuer_known(jwt: jwt_pb2.JwtAuthentication, claims: Mapping[str, Any]) -> bool:
    return any(p.issuer == claims.get("iss") for p in jwt.providers.values())


# --- RBAC ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
    principal: str | None
    path: str
    headers: Mapping[str, str]
    claims: Mapping[str, Any] | None
    address: str


def _rbac(rules: rbac_config_pb2.RBAC, facts: _Facts) -> list[str]:
    """The names of the policies that match, in Envoy's order (by name)."""
    return [
        name
        for name in sorted(rules.policies)
        if any(_permission(p, facts) for p in rules.policies[name].permissions)
        and any(_principal(p, facts) for p in rules.policies[name].principals)
    ]


def _permission(rule: rbac_config_pb2.Permission, facts: _Facts) -> bool:
    kind = rule.WhichOneof("rule")
    if kind == "any":
        return bool(rule.any)
    if kind == "and_rules":
        return all(_permission(r, facts) for r in rule.and_rules.rules)
    if kind == "or_rules":
        return any(_permission(r, facts) for r in rule.or_rules.rules)
    if kind == "not_rule":
        return not _permission(rule.not_rule, facts)
    if kind == "header":
        return _header_matches(rule.header, facts.headers)
    if kind == "url_path":
        return _string_matches(rule.url_path.path, facts.path)
    raise ValueError(f"explain cannot evaluate a permission of kind {kind}")


def _principal(rule: rbac_config_pb2.Principal, facts: _Facts) -> bool:
    kind = rule.WhichOneof("identifier")
    if kind == "any":
        return bool(rule.any)
    if kind == "and_ids":
        return all(_principal(r, facts) for r in rule.and_ids.ids)
    if kind == "or_ids":
        return any(_principal(r, facts) for r in rule.or_ids.ids)
    if kind == "not_id":
        return not _principal(rule.not_id, facts)
    if kind == "authenticated":
        if facts.principal is None:
            return False
        matcher = rule.authenticated.principal_name
        return not matcher.ByteSize() or _string_matches(matcher, facts.principal)
    if kind == "direct_remote_ip":
        return _in_cidr(
            facts.address,
            rule.direct_remote_ip.address_prefix,
            rule.direct_remote_ip.prefix_len.value,
        )
    if kind == "metadata":
        value: Any = facts.claims
        for segment in list(rule.metadata.path)[1:]:  # [payload, claim, ...]
            value = value.get(segment.key) if isinstance(value, Mapping) else None
        return _value_matches(rule.metadata.value, value) != bool(rule.metadata.invert)
    raise ValueError(f"explain cannot evaluate a principal of kind {kind}")


def _value_matches(matcher: value_pb2.ValueMatcher, value: Any) -> bool:
    kind = matcher.WhichOneof("match_pattern")
    if kind == "present_match":
        return value is not None
    if kind == "string_match":
        return isinstance(value, str) and _string_matches(matcher.string_match, value)
    if kind == "list_match":
        return isinstance(value, list) and any(
            _value_matches(matcher.list_match.one_of, v) for v in value
        )
    return False


def _in_cidr(address: str, prefix: str, length: int) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(
            f"{prefix}/{length}", strict=False
        )
    except ValueError:
        return False


def _header_matches(
    matcher: route_components_pb2.HeaderMatcher, headers: Mapping[str, str]
) -> bool:
    value = headers.get(matcher.name.lower())
    kind = matcher.WhichOneof("header_match_specifier")
    if kind == "present_match":
        found = value is not None
    elif value is None:
        found = False
    elif kind == "string_match":
        found = _string_matches(matcher.string_match, value)
    elif kind == "exact_match":
        found = value == matcher.exact_match
    else:
        found = True
    return found != bool(matcher.invert_match)


def _string_matches(matcher: string_pb2.StringMatcher, value: str) -> bool:
    kind = matcher.WhichOneof("match_pattern")
    fold = matcher.ignore_case
    subject = value.lower() if fold else value

    def given(text: str) -> str:
        return text.lower() if fold else text

    if kind == "exact":
        return subject == given(matcher.exact)
    if kind == "prefix":
        return subject.startswith(given(matcher.prefix))
    if kind == "suffix":
        return subject.endswith(given(matcher.suffix))
    if kind == "contains":
        return given(matcher.contains) in subject
    if kind == "safe_regex":
        return re2.fullmatch(matcher.safe_regex.regex, value) is not None
    return False
