"""Listeners: one outbound listener the app sends to, one inbound listener per port
the workload serves."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf.wrappers_pb2 import BoolValue

from sidemesh.envoy import names
from sidemesh.envoy.protos import ads_config_source, packed, socket_address
from sidemesh.envoy.routes import inbound_route_config, prefix_route_config
from sidemesh.envoy.tls import TLS_INSPECTOR, downstream_mtls
from sidemesh.model import MtlsMode

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
    inbound: bool = False,
    edge: bool = False,
) -> listener_components_pb2.Filter:
    hcm = hcm_pb2.HttpConnectionManager(
        # At the mesh's edge the peer's address is the client's; inside, it is a sidecar.
        use_remote_address=BoolValue(value=edge),
        stat_prefix=stat_prefix,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        # Outbound: drop any x-forwarded-client-cert the app sent. Inbound: replace it
        # with the peer's verified SPIFFE ID, so the app can trust what it reads.
        forward_client_cert_details=(
            hcm_pb2.HttpConnectionManager.SANITIZE_SET
            if inbound
            else hcm_pb2.HttpConnectionManager.SANITIZE
        ),
        set_current_client_cert_details=(
            hcm_pb2.HttpConnectionManager.SetCurrentClientCertDetails(uri=True) if inbound else None
        ),
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


def _tcp_proxy(name: str, cluster: str) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(
        name=TCP_PROXY_FILTER,
        typed_config=packed(
            tcp_proxy_pb2.TcpProxy(stat_prefix=names.stat_prefix(name), cluster=cluster)
        ),
    )


def upstream_listener(
    name: str, port: int, cluster: str, *, http: bool, streaming: bool
) -> listener_pb2.Listener:
    """A local port of the sidecar that leads to one service: for apps that speak TCP
    or gRPC and so cannot use the sidecar as an HTTP proxy."""
    if http:
        network_filter = _http_connection_manager(
            names.stat_prefix(name),
            route_config=prefix_route_config(name, [("/", cluster, streaming)]),
        )
    else:
        network_filter = _tcp_proxy(name, cluster)
    return listener_pb2.Listener(
        name=name,
        address=socket_address(OUTBOUND_BIND_ADDRESS, port),
        traffic_direction=base_pb2.OUTBOUND,
        filter_chains=[listener_components_pb2.FilterChain(filters=[network_filter])],
    )


def gateway_listener(
    name: str, address: str, port: int, routes: list[tuple[str, str, bool]]
) -> listener_pb2.Listener:
    """The entry of callers from outside the mesh: routes by path prefix."""
    return listener_pb2.Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=base_pb2.INBOUND,
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    _http_connection_manager(
                        names.stat_prefix(name),
                        route_config=prefix_route_config(name, routes),
                        edge=True,
                    )
                ]
            )
        ],
    )


def inbound_listener(
    name: str,
    address: str,
    port: int,
    cluster: str,
    *,
    http: bool,
    mtls: MtlsMode,
    trust_domain: str,
) -> listener_pb2.Listener:
    """STRICT: one mTLS filter chain. PERMISSIVE: a TLS inspector picks the mTLS chain
    for TLS connections and a plaintext one for the rest. DISABLE: plaintext only."""
    if http:
        network_filter = _http_connection_manager(
            names.stat_prefix(name), route_config=inbound_route_config(name, cluster), inbound=True
        )
    else:
        network_filter = _tcp_proxy(name, cluster)
    mtls_chain = listener_components_pb2.FilterChain(
        name="mtls",
        filters=[network_filter],
        transport_socket=downstream_mtls(trust_domain),
    )
    plaintext_chain = listener_components_pb2.FilterChain(
        name="plaintext", filters=[network_filter]
    )
    listener = listener_pb2.Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=base_pb2.INBOUND,
    )
    if mtls is MtlsMode.STRICT:
        listener.filter_chains.append(mtls_chain)
    elif mtls is MtlsMode.DISABLE:
        listener.filter_chains.append(plaintext_chain)
    else:
        listener.listener_filters.append(
            listener_components_pb2.ListenerFilter(
                name=TLS_INSPECTOR, typed_config=packed(tls_inspector_pb2.TlsInspector())
            )
        )
        mtls_chain.filter_chain_match.transport_protocol = "tls"
        plaintext_chain.filter_chain_match.transport_protocol = "raw_buffer"
        listener.filter_chains.extend([mtls_chain, plaintext_chain])
    return listener
