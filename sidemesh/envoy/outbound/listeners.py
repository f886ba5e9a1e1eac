"""Outbound listeners: one the app sends all its HTTP to (its HTTP proxy), and one
local port per upstream for apps that cannot use an HTTP proxy (TCP, gRPC)."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2

from sidemesh.envoy import names
from sidemesh.envoy.filters import ROUTER_ONLY, HttpFilters, http_connection_manager, tcp_proxy
from sidemesh.envoy.observability import ProxyTelemetry
from sidemesh.envoy.outbound.routes import prefix_route_config
from sidemesh.envoy.protos import socket_address

OUTBOUND_BIND_ADDRESS = "127.0.0.1"
"""The app reaches its sidecar on loopback; nothing else may use it as a proxy."""


def outbound_listener(
    port: int, filters: HttpFilters = ROUTER_ONLY, telemetry: ProxyTelemetry | None = None
) -> listener_pb2.Listener:
    """Routes by Host/authority over RDS (the shared outbound route configuration)."""
    name = names.outbound_listener(port)
    return listener_pb2.Listener(
        name=name,
        address=socket_address(OUTBOUND_BIND_ADDRESS, port),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    http_connection_manager(
                        names.stat_prefix(name),
                        filters,
                        rds_name=names.OUTBOUND_ROUTE_CONFIG,
                        telemetry=telemetry,
                    )
                ]
            )
        ],
    )


def upstream_listener(
    name: str,
    port: int,
    cluster: str,
    *,
    http: bool,
    streaming: bool,
    filters: HttpFilters = ROUTER_ONLY,
    telemetry: ProxyTelemetry | None = None,
) -> listener_pb2.Listener:
    """A local port of the sidecar that leads to one service: for apps that speak TCP
    or gRPC and so cannot use the sidecar as an HTTP proxy."""
    if http:
        network_filter = http_connection_manager(
            names.stat_prefix(name),
            filters,
            route_config=prefix_route_config(name, [("/", cluster, streaming)]),
            telemetry=telemetry,
        )
    else:
        network_filter = tcp_proxy(names.stat_prefix(name), cluster)
    return listener_pb2.Listener(
        name=name,
        address=socket_address(OUTBOUND_BIND_ADDRESS, port),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=[listener_components_pb2.FilterChain(filters=[network_filter])],
    )
