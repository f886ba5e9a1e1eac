"""Inbound clusters: the local app, one cluster per port the workload serves."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from sidemesh.envoy import names
from sidemesh.envoy.protos import seconds, socket_address, static_cluster
from sidemesh.model import ServiceKey, ServicePort

LOCAL_APP_ADDRESS = "127.0.0.1"
"""The app listens on loopback: only its own sidecar reaches it."""


def inbound_cluster(key: ServiceKey, port: ServicePort, app_port: int) -> cluster_pb2.Cluster:
    """The local app, reached on loopback by the sidecar's inbound listener."""
    return static_cluster(
        names.inbound_cluster(key, port.port),
        socket_address(LOCAL_APP_ADDRESS, app_port),
        http2=port.protocol.needs_http2,
    )


def blackhole_cluster() -> cluster_pb2.Cluster:
    """A cluster with no endpoints: a connection sent to it is closed."""
    return cluster_pb2.Cluster(
        name=names.BLACKHOLE_CLUSTER,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=seconds(1),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(cluster_name=names.BLACKHOLE_CLUSTER),
    )
