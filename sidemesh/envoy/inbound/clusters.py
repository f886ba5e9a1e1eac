"""Inbound clusters: the local app, one cluster per port the workload serves."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2

from sidemesh.envoy import names
from sidemesh.envoy.protos import socket_address, static_cluster
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
