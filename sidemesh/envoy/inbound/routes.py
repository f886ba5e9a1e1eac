"""The inbound route configuration: everything that arrived goes to the local app,
but a path with an encoded NUL (``%00``), which no server reads alike (C strings end
there), is refused with 400 before any app sees it."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.type.matcher.v3 import regex_pb2

from sidemesh.envoy.protos import seconds


def inbound_route_config(name: str, cluster: str) -> route_pb2.RouteConfiguration:
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
