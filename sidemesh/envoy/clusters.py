"""Clusters: one outbound cluster per service port (endpoints by EDS) and one
inbound cluster per port the proxy's own workload serves (the local app)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2

from sidemesh.envoy import names
from sidemesh.envoy.protos import (
    ads_config_source,
    http2_upstream_options,
    seconds,
    socket_address,
    static_cluster,
)
from sidemesh.envoy.tls import upstream_mtls
from sidemesh.model import MtlsMode, Service, ServiceKey, ServicePort

CONNECT_TIMEOUT_S = 1.0
LOCAL_APP_ADDRESS = "127.0.0.1"


def outbound_clusters(
    key: ServiceKey, service: Service, mtls: MtlsMode, identities: tuple[str, ...]
) -> list[cluster_pb2.Cluster]:
    return [outbound_cluster(key, port, mtls, identities) for port in service.ports]


def outbound_cluster(
    key: ServiceKey, port: ServicePort, mtls: MtlsMode, identities: tuple[str, ...]
) -> cluster_pb2.Cluster:
    """``identities``: the SPIFFE IDs allowed to answer for the service. A service in
    DISABLE mode is called in plaintext; PERMISSIVE and STRICT ones over mTLS."""
    name = names.outbound_cluster(key, port.port)
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ads_config_source(), service_name=name
        ),
        connect_timeout=seconds(CONNECT_TIMEOUT_S),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
    )
    if mtls is not MtlsMode.DISABLE:
        cluster.transport_socket.CopyFrom(
            upstream_mtls(identities, sni=name, http2=port.protocol.needs_http2)
        )
    if port.protocol.needs_http2:
        for k, v in http2_upstream_options().items():
            cluster.typed_extension_protocol_options[k].CopyFrom(v)
    return cluster


def inbound_cluster(key: ServiceKey, port: ServicePort, app_port: int) -> cluster_pb2.Cluster:
    """The local app, reached on loopback by the sidecar's inbound listener."""
    return static_cluster(
        names.inbound_cluster(key, port.port),
        socket_address(LOCAL_APP_ADDRESS, app_port),
        http2=port.protocol.needs_http2,
        connect_timeout_s=CONNECT_TIMEOUT_S,
    )
