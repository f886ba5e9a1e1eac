"""Clusters: one outbound cluster per service port (endpoints by EDS) and one
inbound cluster per port the proxy's own workload serves (the local app)."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from sidemesh.envoy import names
from sidemesh.envoy.protos import ads_config_source, http2_upstream_options, seconds, socket_address
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
    name = names.inbound_cluster(key, port.port)
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=seconds(CONNECT_TIMEOUT_S),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(
                                address=socket_address(LOCAL_APP_ADDRESS, app_port)
                            )
                        )
                    ]
                )
            ],
        ),
    )
    if port.protocol.needs_http2:
        for k, v in http2_upstream_options().items():
            cluster.typed_extension_protocol_options[k].CopyFrom(v)
    return cluster
