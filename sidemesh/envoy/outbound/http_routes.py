"""Gateway API routes (HTTPRoute, GRPCRoute) attached to a Service → the Envoy routes
of that service's virtual host in a caller's outbound route config.

Which routes apply (GAMMA): a route in the service's own namespace (a *producer*
route) applies to every caller; a route in another namespace whose parentRef names the
service (a *consumer* route) applies only to callers in the route's namespace, and
where a caller has consumer routes for a service they replace the producer routes. A
parentRef ``port`` limits a route to that port.

In which order (Gateway API precedence, first match wins in Envoy): an Exact path,
then a RegularExpression path, then the longest PathPrefix; then a match with a method;
then more header matches; then more query-param matches; then (equal so far) the route
first by namespace/name (the spec says oldest, and local routes have no creation time);
then rule order within the route. Requests no rule matches get 404, as the spec says."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.matcher.v3 import regex_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from sidemesh.envoy.matches import header_matcher, route_match
from sidemesh.envoy.protos import packed, seconds
from sidemesh.model import ServiceKey
from sidemesh.model.base import parse_duration
from sidemesh.model.policy import FaultInjection, GRPCRoute, HTTPRoute, Policies
from sidemesh.model.policy.common import BackendRef, ParentRef
from sidemesh.model.policy.routes import (
    FilterType,
    GRPCRouteMatch,
    GRPCRouteRule,
    HeaderModifier,
    HTTPBackendRef,
    HTTPRouteFilter,
    HTTPRouteMatch,
    HTTPRouteRule,
    PathMatchType,
    PathModifier,
    PathModifierType,
    RequestRedirect,
    StringMatchType,
)

FAULT_FILTER = "envoy.filters.http.fault"
ClusterOf = Callable[[ServiceKey, int], str]
"""(backend service, port) → the name of the caller's cluster for it."""


def applicable_routes(
    routes: Sequence[HTTPRoute | GRPCRoute], key: ServiceKey, port: int, caller_namespace: str
) -> list[HTTPRoute | GRPCRoute]:
    """The routes a caller in ``caller_namespace`` follows to ``key``:``port``."""

    def attaches(route: HTTPRoute | GRPCRoute) -> bool:
        return any(_names(p, route, key, port) for p in route.spec.parent_refs)

    attached = [r for r in routes if attaches(r)]
    consumer = [
        r
        for r in attached
        if r.metadata.namespace != key.namespace and r.metadata.namespace == caller_namespace
    ]
    if consumer:
        return consumer
    return [r for r in attached if r.metadata.namespace == key.namespace]


def _names(parent: ParentRef, route: HTTPRoute | GRPCRoute, key: ServiceKey, port: int) -> bool:
    return (
        parent.is_service
        and parent.name == key.name
        and (parent.namespace or route.metadata.namespace) == key.namespace
        and parent.port in (None, port)
    )


@dataclass(frozen=True)
class _Entry:
    rank: tuple[object, ...]
    route: route_components_pb2.Route


def http_routes(
    routes: Sequence[HTTPRoute],
    default_port: int,
    policies: Policies,
    cluster_of: ClusterOf,
    default_timeout_s: float,
    default_retry: route_components_pb2.RetryPolicy,
) -> list[route_components_pb2.Route]:
    """Envoy routes, in precedence order, for the rules of ``routes``."""
    entries: list[_Entry] = []
    for route_index, rule_index, namespace, base_name, rule in _rules(routes):
        for match_index, match in enumerate(rule.effective_matches):
            envoy_route = route_components_pb2.Route(
                name=f"{base_name}/{match_index}", match=route_match(match)
            )
            _apply_rule(
                envoy_route,
                rule,
                namespace,
                default_port,
                policies,
                cluster_of,
                default_timeout_s,
                default_retry,
            )
            rank = (*_precedence(match), route_index, rule_index, match_index)
            entries.append(_Entry(rank, envoy_route))
    return [e.route for e in sorted(entries, key=lambda e: e.rank)]


def _rules(
    routes: Sequence[HTTPRoute | GRPCRoute],
) -> Iterator[tuple[int, int, str, str, Any]]:
    """(route index, rule index, namespace, name, rule) over the routes ordered by
    namespace/name (the tie-break that follows every more specific one), each rule
    named ``<namespace>/<route>/<rule name or rule-N>`` in logs and config dumps."""
    ordered = sorted(routes, key=lambda r: (r.metadata.namespace or "", r.metadata.name))
    for route_index, route in enumerate(ordered):
        namespace = route.metadata.namespace or ""
        rules: Sequence[HTTPRouteRule | GRPCRouteRule] = route.spec.rules
        for rule_index, rule in enumerate(rules):
            name = f"{namespace}/{route.metadata.name}/{rule.name or f'rule-{rule_index}'}"
            yield route_index, rule_index, namespace, name, rule


def _precedence(match: HTTPRouteMatch) -> tuple[int, ...]:
    path = match.effective_path
    kind = {
        PathMatchType.EXACT: 0,
        PathMatchType.REGULAR_EXPRESSION: 1,
        PathMatchType.PATH_PREFIX: 2,
    }[path.type]
    length = len(path.value) if path.type is PathMatchType.PATH_PREFIX else 0
    return (
        kind,
        -length,
        0 if match.method else 1,
        -len(match.headers),
        -len(match.query_params),
    )


def _apply_rule(
    out: route_components_pb2.Route,
    rule: HTTPRouteRule,
    namespace: str,
    default_port: int,
    policies: Policies,
    cluster_of: ClusterOf,
    default_timeout_s: float,
    default_retry: route_components_pb2.RetryPolicy,
) -> None:
    redirect = next((f for f in rule.filters if f.type is FilterType.REQUEST_REDIRECT), None)
    _header_filters(out, rule.filters)
    if redirect is not None and redirect.request_redirect is not None:
        out.redirect.CopyFrom(_redirect(redirect.request_redirect, rule))
        return
    weighted = [r for r in rule.backend_refs if r.weight > 0]
    if not weighted:
        # The Gateway API: a rule with no backend to send to answers 500.
        out.direct_response.status = 500
        return
    action = out.route
    # A backend that does not exist takes its share and answers 500 (Gateway API).
    action.cluster_not_found_response_code = route_components_pb2.RouteAction.INTERNAL_SERVER_ERROR
    clusters = [
        (cluster_of(_backend_key(ref, namespace), ref.port or default_port), ref)
        for ref in weighted
    ]
    if len(clusters) == 1 and not clusters[0][1].filters:
        action.cluster = clusters[0][0]
    else:
        for name, ref in clusters:
            weighted_cluster = action.weighted_clusters.clusters.add(
                name=name, weight=wrappers_pb2.UInt32Value(value=ref.weight)
            )
            for item in ref.filters:
                modifier = item.request_header_modifier
                if item.type is FilterType.REQUEST_HEADER_MODIFIER and modifier is not None:
                    weighted_cluster.request_headers_to_add.extend(_headers_to_add(modifier))
                    weighted_cluster.request_headers_to_remove.extend(modifier.remove)
    timeout_s = default_timeout_s
    retry = route_components_pb2.RetryPolicy()
    retry.CopyFrom(default_retry)
    if rule.timeouts is not None:
        if rule.timeouts.request is not None:
            timeout_s = parse_duration(rule.timeouts.request)
        if rule.timeouts.backend_request is not None:
            retry.per_try_timeout.CopyFrom(seconds(parse_duration(rule.timeouts.backend_request)))
    if rule.retry is not None:
        if rule.retry.attempts is not None:
            retry.num_retries.value = rule.retry.attempts
        if rule.retry.codes:
            del retry.retriable_status_codes[:]
            retry.retriable_status_codes.extend(rule.retry.codes)
        if rule.retry.backoff is not None:
            base = parse_duration(rule.retry.backoff)
            retry.retry_back_off.base_interval.CopyFrom(seconds(base))
            retry.retry_back_off.max_interval.CopyFrom(seconds(base * 10))
    action.timeout.CopyFrom(seconds(timeout_s))
    action.retry_policy.CopyFrom(retry)
    for item in rule.filters:
        if item.type is FilterType.URL_REWRITE and item.url_rewrite is not None:
            rewrite = item.url_rewrite
            if rewrite.hostname is not None:
                action.host_rewrite_literal = rewrite.hostname
            if rewrite.path is not None:
                _rewrite_path(action, rewrite.path, rule)
        elif item.type is FilterType.REQUEST_MIRROR and item.request_mirror is not None:
            mirror = item.request_mirror
            target = mirror.backend_ref
            action.request_mirror_policies.add(
                cluster=cluster_of(_backend_key(target, namespace), target.port or default_port),
                runtime_fraction=base_pb2.RuntimeFractionalPercent(
                    default_value=_fraction(mirror.share)
                ),
            )
        elif item.type is FilterType.EXTENSION_REF and item.extension_ref is not None:
            fault = policies.fault(namespace, item.extension_ref.name)
            if fault is not None:
                out.typed_per_filter_config[FAULT_FILTER].CopyFrom(packed(_fault(fault)))


def _backend_key(ref: BackendRef, namespace: str) -> ServiceKey:
    return ServiceKey(ref.name, ref.namespace or namespace)


def _headers_to_add(modifier: HeaderModifier) -> list[base_pb2.HeaderValueOption]:
    out = [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=h.name.lower(), value=h.value),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        )
        for h in modifier.set
    ]
    out += [
        base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=h.name.lower(), value=h.value),
            append_action=base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD,
        )
        for h in modifier.add
    ]
    return out


def _header_filters(out: route_components_pb2.Route, filters: Sequence[HTTPRouteFilter]) -> None:
    for item in filters:
        if item.type is FilterType.REQUEST_HEADER_MODIFIER and item.request_header_modifier:
            out.request_headers_to_add.extend(_headers_to_add(item.request_header_modifier))
            out.request_headers_to_remove.extend(
                h.lower() for h in item.request_header_modifier.remove
            )
        elif item.type is FilterType.RESPONSE_HEADER_MODIFIER and item.response_header_modifier:
            out.response_headers_to_add.extend(_headers_to_add(item.response_header_modifier))
            out.response_headers_to_remove.extend(
                h.lower() for h in item.response_header_modifier.remove
            )


_REDIRECT_CODES = {
    301: route_components_pb2.RedirectAction.MOVED_PERMANENTLY,
    302: route_components_pb2.RedirectAction.FOUND,
    303: route_components_pb2.RedirectAction.SEE_OTHER,
    307: route_components_pb2.RedirectAction.TEMPORARY_REDIRECT,
    308: route_components_pb2.RedirectAction.PERMANENT_REDIRECT,
}


def _redirect(
    redirect: RequestRedirect, rule: HTTPRouteRule
) -> route_components_pb2.RedirectAction:
    out = route_components_pb2.RedirectAction(response_code=_REDIRECT_CODES[redirect.status_code])
    if redirect.scheme is not None:
        out.scheme_redirect = redirect.scheme
    if redirect.hostname is not None:
        out.host_redirect = redirect.hostname
    if redirect.port is not None:
        out.port_redirect = redirect.port
    if redirect.path is not None:
        if redirect.path.type is PathModifierType.REPLACE_FULL_PATH:
            out.path_redirect = redirect.path.replace_full_path or "/"
        else:
            out.prefix_rewrite = _prefix_replacement(redirect.path, rule)
    return out


def _rewrite_path(
    action: route_components_pb2.RouteAction, path: PathModifier, rule: HTTPRouteRule
) -> None:
    if path.type is PathModifierType.REPLACE_FULL_PATH:
        action.regex_rewrite.CopyFrom(
            regex_pb2.RegexMatchAndSubstitute(
                pattern=regex_pb2.RegexMatcher(regex="^/.*$"),
                substitution=path.replace_full_path or "/",
            )
        )
    else:
        action.prefix_rewrite = _prefix_replacement(path, rule)


def _prefix_replacement(path: PathModifier, rule: HTTPRouteRule) -> str:
    # With path_separated_prefix matching, Envoy replaces the matched prefix (no
    # trailing slash); "/" as the replacement would leave "//x", so it becomes "".
    replacement = path.replace_prefix_match or "/"
    return replacement.rstrip("/") or "/"


def _fraction(share: float) -> percent_pb2.FractionalPercent:
    return percent_pb2.FractionalPercent(
        numerator=round(share * 1_000_000),
        denominator=percent_pb2.FractionalPercent.MILLION,
    )


def _fault(fault: FaultInjection) -> fault_pb2.HTTPFault:
    out = fault_pb2.HTTPFault()
    spec = fault.spec
    if spec.delay is not None:
        out.delay.CopyFrom(
            common_fault_pb2.FaultDelay(
                fixed_delay=seconds(parse_duration(spec.delay.fixed_delay)),
                percentage=_fraction(spec.delay.percentage / 100),
            )
        )
    if spec.abort is not None:
        out.abort.CopyFrom(
            fault_pb2.FaultAbort(
                http_status=spec.abort.http_status,
                percentage=_fraction(spec.abort.percentage / 100),
            )
        )
    return out


# --- gRPC ---------------------------------------------------------------------------


def grpc_routes(
    routes: Sequence[GRPCRoute],
    default_port: int,
    policies: Policies,
    cluster_of: ClusterOf,
    default_retry: route_components_pb2.RetryPolicy,
) -> list[route_components_pb2.Route]:
    """A GRPCRoute is an HTTPRoute on the path ``/<service>/<method>``: matched as such,
    with the same backends and filters; streams get no request timeout."""
    entries: list[_Entry] = []
    for route_index, rule_index, namespace, base_name, rule in _rules(routes):
        as_http = HTTPRouteRule(
            name=rule.name,
            filters=rule.filters,
            backend_refs=tuple(
                HTTPBackendRef.model_validate(ref.model_dump()) for ref in rule.backend_refs
            ),
        )
        for match_index, match in enumerate(rule.matches or (GRPCRouteMatch(),)):
            envoy_route = route_components_pb2.Route(
                name=f"{base_name}/{match_index}", match=_grpc_match(match)
            )
            _apply_rule(
                envoy_route,
                as_http,
                namespace,
                default_port,
                policies,
                cluster_of,
                0.0,
                default_retry,
            )
            method = match.method
            specific = 0 if method and method.service and method.method else 1 if method else 2
            rank = (specific, -len(match.headers), route_index, rule_index, match_index)
            entries.append(_Entry(rank, envoy_route))
    return [e.route for e in sorted(entries, key=lambda e: e.rank)]


def _grpc_match(match: GRPCRouteMatch) -> route_components_pb2.RouteMatch:
    out = route_components_pb2.RouteMatch()
    method = match.method
    if method is None:
        out.prefix = "/"
    elif method.type is StringMatchType.EXACT:
        if method.service and method.method:
            out.path = f"/{method.service}/{method.method}"
        elif method.service:
            out.prefix = f"/{method.service}/"
        else:
            out.safe_regex.CopyFrom(
                regex_pb2.RegexMatcher(regex=f"/[^/]+/{_re_escape(method.method or '')}")
            )
    else:
        service = method.service or "[^/]+"
        name = method.method or "[^/]+"
        out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=f"/{service}/{name}"))
    out.headers.extend(header_matcher(h) for h in match.headers)
    # gRPC is HTTP/2 POST with this content type; anything else is not this route's.
    out.grpc.SetInParent()
    return out


def _re_escape(text: str) -> str:
    return "".join(f"\\{c}" if not c.isalnum() and c != "_" else c for c in text)
