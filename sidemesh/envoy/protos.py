"""Small constructors shared by the builders, so each builder reads as Envoy config."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from sidemesh.model.addresses import parse_ip

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
CONNECT_TIMEOUT_S = 1.0
"""How long a sidecar waits for a TCP connection: to a peer sidecar, to its own app on
loopback, to the control plane or the agent."""


def socket_address(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )


def ads_config_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def seconds(value: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


def packed(message: Message) -> any_pb2.Any:
    body = any_pb2.Any()
    body.Pack(message, deterministic=True)
    return body


def http2_upstream_options() -> dict[str, any_pb2.Any]:
    """Cluster option: speak HTTP/2 to the upstream (gRPC, h2c apps, the control plane)."""
    options = http_protocol_options_pb2.HttpProtocolOptions(
        explicit_http_config=http_protocol_options_pb2.HttpProtocolOptions.ExplicitHttpConfig(
            http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
        )
    )
    return {HTTP_PROTOCOL_OPTIONS: packed(options)}


def static_cluster(
    name: str,
    address: address_pb2.Address,
    *,
    http2: bool,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> cluster_pb2.Cluster:
    """A cluster of one fixed address: the local app, the control plane, the agent."""
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=seconds(connect_timeout_s),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(address=address)
                        )
                    ]
                )
            ],
        ),
    )
    if http2:
        for key, value in http2_upstream_options().items():
            cluster.typed_extension_protocol_options[key].CopyFrom(value)
    return cluster


def hosts_cluster(name: str, addresses: list[str], port: int) -> cluster_pb2.Cluster:
    """A cluster of hosts outside the mesh, its endpoints inline: IP literals as they
    are (STATIC); one host name resolved at connect time, as a client would
    (LOGICAL_DNS); several names, balanced over all they resolve to (STRICT_DNS)."""
    if all(parse_ip(a) is not None for a in addresses):
        kind = cluster_pb2.Cluster.STATIC
    elif len(addresses) == 1:
        kind = cluster_pb2.Cluster.LOGICAL_DNS
    else:
        kind = cluster_pb2.Cluster.STRICT_DNS
    return cluster_pb2.Cluster(
        name=name,
        type=kind,
        connect_timeout=seconds(CONNECT_TIMEOUT_S),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        dns_lookup_family=cluster_pb2.Cluster.V4_PREFERRED,
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(
                                address=socket_address(address, port)
                            )
                        )
                        for address in addresses
                    ]
                )
            ],
        ),
    )
