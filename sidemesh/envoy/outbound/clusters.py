"""Outbound clusters: one per service port, its endpoints by EDS, called over mTLS
(unless the service disables it) that accepts only the service's identities."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2

from sidemesh.envoy import names
from sidemesh.envoy.outbound.backend_policy import apply_backend_settings
from sidemesh.envoy.protos import (
    CONNECT_TIMEOUT_S,
    ads_config_source,
    http2_upstream_options,
    seconds,
)
from sidemesh.envoy.tls import upstream_mtls
from sidemesh.model import MtlsMode, ServiceKey, ServicePort
from sidemesh.model.policy.backend import BackendSettings


def outbound_cluster(
    key: ServiceKey,
    port: ServicePort,
    mtls: MtlsMode,
    identities: tuple[str, ...],
    backend: BackendSettings | None = None,
) -> cluster_pb2.Cluster:
    """``identities``: the SPIFFE IDs allowed to answer for the service. A service in
    DISABLE mode is called in plaintext; PERMISSIVE and STRICT ones over mTLS.
    ``backend``: the service's BackendPolicy settings (the retry budget applies
    without one)."""
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
    apply_backend_settings(cluster, backend, host=f"{key.name}.{key.namespace}")
    return cluster
