"""Outbound listeners: one the app sends all its HTTP to (its HTTP proxy), and one
local port per upstream for apps that cannot use an HTTP proxy (TCP, gRPC)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import NamedTuple

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from google.protobuf import wrappers_pb2

from sidemesh.envoy import names
from sidemesh.envoy.filters import (
    ORIGINAL_DST_FILTER,
    ROUTER_ONLY,
    HttpFilters,
    http_connection_manager,
    tcp_proxy,
)
from sidemesh.envoy.observability import ProxyTelemetry
from sidemesh.envoy.outbound.routes import prefix_route_config
from sidemesh.envoy.protos import packed, socket_address

OUTBOUND_BIND_ADDRESS = "127.0.0.1"
"""The app reaches its sidecar on loopback; nothing else may use it as a proxy."""


class CapturedTcp(NamedTuple):
    """Where a captured app may dial a TCP service: a connection to ``address:port``
    goes to ``cluster``."""

    address: str
    port: int
    cluster: str


def outbound_listener(
    port: int,
    filters: HttpFilters = ROUTER_ONLY,
    telemetry: ProxyTelemetry | None = None,
    captured: Sequence[CapturedTcp] | None = None,
) -> listener_pb2.Listener:
    """Routes by Host/authority over RDS (the shared outbound route configuration).
    ``captured``: the sidecar's pod redirects its app's outbound connections here, so
    each is matched by the address it was dialled at: one of these TCP destinations
    goes to its service (TCP has no Host to route by); anything else is HTTP."""
    name = names.outbound_listener(port)
    listener = listener_pb2.Listener(
        name=name,
        address=socket_address(OUTBOUND_BIND_ADDRESS, port),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=[
            listener_components_pb2.FilterChain(
                name="http",
                filters=[
                    http_connection_manager(
                        names.stat_prefix(name),
                        filters,
                        rds_name=names.OUTBOUND_ROUTE_CONFIG,
                        telemetry=telemetry,
                    )
                ],
            )
        ],
    )
    if captured is not None:
        listener.listener_filters.append(
            listener_components_pb2.ListenerFilter(
                name=ORIGINAL_DST_FILTER, typed_config=packed(original_dst_pb2.OriginalDst())
            )
        )
        listener.filter_chains.extend(_tcp_chain(d) for d in captured)
    return listener


def _tcp_chain(destination: CapturedTcp) -> listener_components_pb2.FilterChain:
    host = ipaddress.ip_address(destination.address)
    return listener_components_pb2.FilterChain(
        name=f"tcp|{destination.address}:{destination.port}",
        filter_chain_match=listener_components_pb2.FilterChainMatch(
            destination_port=wrappers_pb2.UInt32Value(value=destination.port),
            prefix_ranges=[
                address_pb2.CidrRange(
                    address_prefix=destination.address,
                    prefix_len=wrappers_pb2.UInt32Value(value=host.max_prefixlen),
                )
            ],
        ),
        filters=[tcp_proxy(names.stat_prefix(destination.cluster), destination.cluster)],
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
