"""Inbound listeners: one per port the workload serves, where calling sidecars (and,
unless mTLS is STRICT, plaintext callers) reach it."""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from google.protobuf import wrappers_pb2

from sidemesh.envoy import names
from sidemesh.envoy.filters import (
    ORIGINAL_DST_FILTER,
    ROUTER_ONLY,
    HttpFilters,
    http_connection_manager,
    tcp_proxy,
)
from sidemesh.envoy.inbound.routes import RateLimitedRoute, inbound_route_config
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
    bind_to_port: bool = True,
    route_limits: Sequence[RateLimitedRoute] = (),
) -> listener_pb2.Listener:
    """STRICT: one mTLS filter chain. PERMISSIVE: a TLS inspector picks the mTLS chain
    for TLS connections and a plaintext one for the rest. DISABLE: plaintext only.
    ``filters``: the callee's HTTP filters (authentication, authorization, rate limits).
    ``bind_to_port`` False: a captured sidecar's, reached only through the capture
    listener, which hands it the connections whose original destination it is."""
    if http:
        network_filter = http_connection_manager(
            names.stat_prefix(name),
            filters,
            route_config=inbound_route_config(name, cluster, route_limits),
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
    if not bind_to_port:
        listener.bind_to_port.value = False
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


CAPTURE_ADDRESS = "0.0.0.0"
"""Every address of the pod: the redirect sends whatever arrives for any of them."""


def inbound_capture_listener(port: int) -> listener_pb2.Listener:
    """Where a pod's redirect sends every inbound connection: each is handed to the
    inbound listener of its original destination (the workload's address and port,
    bound to no port itself); one to a port the workload does not serve is closed."""
    name = names.INBOUND_CAPTURE_LISTENER
    return listener_pb2.Listener(
        name=name,
        address=socket_address(CAPTURE_ADDRESS, port),
        traffic_direction=base_pb2.INBOUND,
        use_original_dst=wrappers_pb2.BoolValue(value=True),
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name=ORIGINAL_DST_FILTER, typed_config=packed(original_dst_pb2.OriginalDst())
            )
        ],
        filter_chains=[
            listener_components_pb2.FilterChain(
                name="unserved-port",
                filters=[tcp_proxy(names.stat_prefix(name), names.BLACKHOLE_CLUSTER)],
            )
        ],
    )
