"""Listeners: one outbound listener the app sends to, one inbound listener per port
the workload serves."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from sidemesh.envoy import names
from sidemesh.envoy.protos import ads_config_source, packed, socket_address
from sidemesh.envoy.routes import inbound_route_config

HCM_FILTER = "envoy.filters.network.http_connection_manager"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
ROUTER_FILTER = "envoy.filters.http.router"
OUTBOUND_BIND_ADDRESS = "127.0.0.1"
"""The app reaches its sidecar on loopback; nothing else may use it as a proxy."""


def _http_connection_manager(
    stat_prefix: str,
    *,
    rds_name: str | None = None,
    route_config: route_pb2.RouteConfiguration | None = None,
) -> listener_components_pb2.Filter:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=stat_prefix,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        http_filters=[
            hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=packed(router_pb2.Router()))
        ],
    )
    if rds_name is not None:
        hcm.rds.CopyFrom(hcm_pb2.Rds(config_source=ads_config_source(), route_config_name=rds_name))
    elif route_config is not None:
        hcm.route_config.CopyFrom(route_config)
    return listener_components_pb2.Filter(name=HCM_FILTER, typed_config=packed(hcm))


def outbound_listener(port: int) -> listener_pb2.Listener:
    name = names.outbound_listener(port)
    return listener_pb2.Listener(
        name=name,
        address=socket_address(OUTBOUND_BIND_ADDRESS, port),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    _http_connection_manager(
                        names.stat_prefix(name), rds_name=names.OUTBOUND_ROUTE_CONFIG
                    )
                ]
            )
        ],
    )


def inbound_listener(
    name: str, address: str, port: int, cluster: str, *, http: bool
) -> listener_pb2.Listener:
    if http:
        network_filter = _http_connection_manager(
            names.stat_prefix(name), route_config=inbound_route_config(name, cluster)
        )
    else:
        network_filter = listener_components_pb2.Filter(
            name=TCP_PROXY_FILTER,
            typed_config=packed(
                tcp_proxy_pb2.TcpProxy(stat_prefix=names.stat_prefix(name), cluster=cluster)
            ),
        )
    return listener_pb2.Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=base_pb2.INBOUND,
        filter_chains=[listener_components_pb2.FilterChain(filters=[network_filter])],
    )
