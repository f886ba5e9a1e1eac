"""The sidecar's bootstrap: who it is, where the control plane is, admin on a private socket."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import ip_address
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, grpc_service_pb2
from google.protobuf import json_format, struct_pb2

from sidemesh.envoy.protos import socket_address, static_cluster
from sidemesh.envoy.proxy import ADMIN_SOCKET_METADATA, ProxyId
from sidemesh.envoy.tls import SDS_CLUSTER, upstream_mtls

XDS_CLUSTER = "xds-grpc"
ADMIN_SOCKET_MODE = 0o600
"""Envoy's admin can change and dump everything and has no authentication of its own:
it listens on a Unix socket only the mesh's user may open, never on a TCP port that any
local user could reach."""


class XdsMode(StrEnum):
    SOTW = "sotw"
    DELTA = "delta"


@dataclass(frozen=True)
class BootstrapParams:
    proxy: ProxyId
    service: str
    control_plane_host: str
    control_plane_port: int
    admin_socket: str
    """Unix socket of Envoy's admin (made 0600 by Envoy)."""
    sds_socket: str
    """Unix socket of the agent's SDS server: certificates come from there."""
    xds_mode: XdsMode = XdsMode.DELTA
    other_control_planes: tuple[tuple[str, int], ...] = ()
    """More replicas of the control plane (host, port): when the one in use goes
    away, Envoy's ADS stream reconnects to another and keeps its config meanwhile."""
    xds_tls_identity: str | None = None
    """The control plane's SPIFFE ID: xDS goes over mTLS (the workload's certificate
    from SDS) to a control plane presenting it. None: plaintext, on loopback only."""


def bootstrap(params: BootstrapParams) -> bootstrap_pb2.Bootstrap:
    api_type = (
        config_source_pb2.ApiConfigSource.DELTA_GRPC
        if params.xds_mode is XdsMode.DELTA
        else config_source_pb2.ApiConfigSource.GRPC
    )
    ads_source = config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )
    metadata = struct_pb2.Struct()
    metadata.update({ADMIN_SOCKET_METADATA: params.admin_socket})
    return bootstrap_pb2.Bootstrap(
        node=base_pb2.Node(id=params.proxy.node_id, cluster=params.service, metadata=metadata),
        admin=bootstrap_pb2.Admin(
            address=address_pb2.Address(
                pipe=address_pb2.Pipe(path=params.admin_socket, mode=ADMIN_SOCKET_MODE)
            ),
        ),
        dynamic_resources=bootstrap_pb2.Bootstrap.DynamicResources(
            ads_config=config_source_pb2.ApiConfigSource(
                api_type=api_type,
                transport_api_version=config_source_pb2.ApiVersion.V3,
                set_node_on_first_message_only=True,
                grpc_services=[
                    grpc_service_pb2.GrpcService(
                        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=XDS_CLUSTER)
                    )
                ],
            ),
            cds_config=ads_source,
            lds_config=ads_source,
        ),
        static_resources=bootstrap_pb2.Bootstrap.StaticResources(
            clusters=[
                _xds_cluster(
                    [
                        (params.control_plane_host, params.control_plane_port),
                        *params.other_control_planes,
                    ],
                    params.xds_tls_identity,
                ),
                sds_cluster(params.sds_socket),
            ]
        ),
        layered_runtime=runtime(),
    )


RE2_MAX_PROGRAM_SIZE = 2000
"""Envoy refuses a regex whose compiled RE2 program is over 100 instructions by
default; the matchers translation writes for policies (a path template with path
parameters allowed per segment, a header's values matched one by one) are larger, and
a refused one would cost the whole listener. Still bounded: RE2 runs in linear time."""


def runtime() -> bootstrap_pb2.LayeredRuntime:
    layer = struct_pb2.Struct()
    layer.update(
        {
            "re2.max_program_size.error_level": RE2_MAX_PROGRAM_SIZE,
            "re2.max_program_size.warn_level": RE2_MAX_PROGRAM_SIZE,
        }
    )
    return bootstrap_pb2.LayeredRuntime(
        layers=[bootstrap_pb2.RuntimeLayer(name="sidemesh", static_layer=layer)]
    )


def _xds_cluster(replicas: list[tuple[str, int]], tls_identity: str | None) -> cluster_pb2.Cluster:
    host, port = replicas[0]
    cluster = static_cluster(XDS_CLUSTER, socket_address(host, port), http2=True)
    group = cluster.load_assignment.endpoints[0]
    for other_host, other_port in replicas[1:]:
        group.lb_endpoints.add().endpoint.address.CopyFrom(socket_address(other_host, other_port))
    if tls_identity is not None:
        # Every replica presents the same identity (the control plane's), so one SNI.
        cluster.transport_socket.CopyFrom(upstream_mtls([tls_identity], host, http2=True))
    for name, _ in replicas:
        try:
            ip_address(name)
        except ValueError:
            cluster.type = cluster_pb2.Cluster.STRICT_DNS  # a host name, not an address
    return cluster


def sds_cluster(socket_path: str) -> cluster_pb2.Cluster:
    """The local agent's SDS server, on a Unix socket only this user can open."""
    return static_cluster(
        SDS_CLUSTER, address_pb2.Address(pipe=address_pb2.Pipe(path=socket_path)), http2=True
    )


def to_json(message: bootstrap_pb2.Bootstrap) -> dict[str, Any]:
    """The bootstrap as the JSON Envoy reads with ``-c``."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)
