"""Inbound listeners: one per port the workload serves, where calling sidecars (and,
unless mTLS is STRICT, plaintext callers) reach it."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2

from sidemesh.envoy import names
from sidemesh.envoy.filters import ROUTER_ONLY, HttpFilters, http_connection_manager, tcp_proxy
from sidemesh.envoy.inbound.routes import inbound_route_config
from sidemesh.envoy.observability import ProxyTelemetry
from sidemesh.envoy.protos import packed, socket_address
from sidemesh.envoy.tls import TLS_INSPECTOR, downstream_mtls
from sidemesh.model import MtlsMode


def inbound_listener(
    name: str,
    address: str,
    port: int,
    cluster: str,
    *,
    http: bool,
    mtls: MtlsMode,
    trust_domain: str,
    filters: HttpFilters = ROUTER_ONLY,
    telemetry: ProxyTelemetry | None = None,
) -> listener_pb2.Listener:
    """STRICT: one mTLS filter chain. PERMISSIVE: a TLS inspector picks the mTLS chain
    for TLS connections and a plaintext one for the rest. DISABLE: plaintext only.
    ``filters``: the callee's HTTP filters (authentication, authorization, rate limits)."""
    if http:
        network_filter = http_connection_manager(
            names.stat_prefix(name),
            filters,
            route_config=inbound_route_config(name, cluster),
            inbound=True,
            telemetry=telemetry,
        )
        mtls_filter = network_filter
    else:
        network_filter = tcp_proxy(names.stat_prefix(name), cluster)
        mtls_filter = tcp_proxy(names.stat_prefix(name), cluster, after_tls_handshake=True)
    mtls_chain = listener_components_pb2.FilterChain(
        name="mtls",
        filters=[mtls_filter],
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
