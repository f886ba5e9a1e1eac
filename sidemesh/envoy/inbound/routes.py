"""The inbound route configuration: everything that arrived goes to the local app,
but a path with an encoded NUL (``%00``), which no server reads alike (C strings end
there), is refused with 400 before any app sees it. Requests a route rate limit
selects go through a route of their own, which carries that limit's bucket."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.type.matcher.v3 import regex_pb2

from sidemesh.envoy.filters import LOCAL_RATELIMIT_FILTER
from sidemesh.envoy.inbound.rate_limit import route_rate_limit
from sidemesh.envoy.matches import route_match
from sidemesh.envoy.protos import packed, seconds
from sidemesh.model import ServiceKey
from sidemesh.model.policy.backend import RateLimit


class RateLimitedRoute(NamedTuple):
    name: str
    match: route_components_pb2.RouteMatch
    limit: local_rate_limit_pb2.LocalRateLimit


def route_rate_limits(service: ServiceKey, limit: RateLimit) -> tuple[RateLimitedRoute, ...]:
    """``limit``'s routes, in order: the first that fits a request takes it."""
    return tuple(
        RateLimitedRoute(f"rate-limit-{i}", route_match(r.match), route_rate_limit(service, i, r))
        for i, r in enumerate(limit.routes)
    )


def inbound_route_config(
    name: str, cluster: str, limited: Sequence[RateLimitedRoute] = ()
) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name="inbound",
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        name="encoded-nul",
                        match=route_components_pb2.RouteMatch(
                            safe_regex=regex_pb2.RegexMatcher(regex="(?i).*%00.*")
                        ),
                        direct_response=route_components_pb2.DirectResponseAction(
                            status=400,
                            body=base_pb2.DataSource(inline_string="path holds %00\n"),
                        ),
                    ),
                    *(
                        route_components_pb2.Route(
                            name=route.name,
                            match=route.match,
                            route=route_components_pb2.RouteAction(
                                cluster=cluster, timeout=seconds(0)
                            ),
                            typed_per_filter_config={LOCAL_RATELIMIT_FILTER: packed(route.limit)},
                        )
                        for route in limited
                    ),
                    route_components_pb2.Route(
                        name="default",
                        match=route_components_pb2.RouteMatch(prefix="/"),
                        # The caller's sidecar owns the request timeout.
                        route=route_components_pb2.RouteAction(cluster=cluster, timeout=seconds(0)),
                    ),
                ],
            )
        ],
    )
