"""The inbound route configuration: everything that arrived goes to the local app."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2, route_pb2

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
                        name="default",
                        match=route_components_pb2.RouteMatch(prefix="/"),
                        # The caller's sidecar owns the request timeout.
                        route=route_components_pb2.RouteAction(cluster=cluster, timeout=seconds(0)),
                    )
                ],
            )
        ],
    )
