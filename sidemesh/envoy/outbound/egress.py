"""The caller's way out of the mesh: declared ExternalServices, and what a call to any
other host gets under the mesh's ``outboundTrafficPolicy``.

Owns: one cluster per host and port of an ExternalService (its endpoints inline, from
the addresses it gives or from DNS, TLS originated if it says so), the virtual hosts
that route the app's requests for those hosts to them, the catch-all virtual host
(``*``, which Envoy tries after every named domain) that either forwards any other
host (ALLOW_ANY: the dynamic forward proxy, which resolves the Host header the way
the app would have) or answers 502 naming the policy (REGISTRY_ONLY), and the
forward proxy's cluster and HTTP filter.
Must not: read a ``MeshState`` (the translator hands it the ExternalServices' specs
and the mode), or touch mesh services' clusters.
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.clusters.dynamic_forward_proxy.v3 import cluster_pb2 as dfp_cluster_pb2
from envoy.extensions.common.dynamic_forward_proxy.v3 import dns_cache_pb2
from envoy.extensions.filters.http.dynamic_forward_proxy.v3 import (
    dynamic_forward_proxy_pb2 as dfp_filter_pb2,
)
from google.protobuf import wrappers_pb2

from sidemesh.envoy.outbound.backend_policy import apply_backend_settings
from sidemesh.envoy.outbound.routes import HTTP_ROUTE_TIMEOUT_S, default_retry_policy
from sidemesh.envoy.protos import CONNECT_TIMEOUT_S, hosts_cluster, packed, seconds
from sidemesh.envoy.tls import upstream_server_tls
from sidemesh.model import OutboundTrafficMode
from sidemesh.model.policy.external import (
    ExternalPort,
    ExternalServiceSpec,
)

PASSTHROUGH_CLUSTER = "PassthroughCluster"
"""Where ALLOW_ANY sends a host the mesh does not know (Istio's name for it)."""
DNS_CACHE = "egress"
"""The forward proxy's DNS cache; its filter and its cluster must name the same one."""
DFP_CLUSTER_TYPE = "envoy.clusters.dynamic_forward_proxy"
CATCH_ALL = "*"
BLOCKED_STATUS = 502
BLOCKED_BODY = (
    "sidemesh: this host is outside the mesh and the mesh's outboundTrafficPolicy is "
    "REGISTRY_ONLY; declare it as an ExternalService to call it\n"
)
EGRESS_HEADER = "x-sidemesh-egress"
"""Set on a blocked call's answer, so a 502 from policy is told from a 502 upstream."""
MAX_EGRESS_HOSTS = 1024
"""Hosts the forward proxy keeps resolved at once (its DNS cache's bound)."""


def external_cluster_name(host: str, port: int) -> str:
    """As a mesh service's outbound cluster, with the host for service.namespace."""
    return f"outbound|{port}||{host}"


def _dns_cache() -> dns_cache_pb2.DnsCacheConfig:
    return dns_cache_pb2.DnsCacheConfig(
        name=DNS_CACHE,
        dns_lookup_family=cluster_pb2.Cluster.V4_PREFERRED,
        max_hosts=wrappers_pb2.UInt32Value(value=MAX_EGRESS_HOSTS),
    )


def forward_proxy_filter() -> dfp_filter_pb2.FilterConfig:
    """The HTTP filter that resolves a request's host for the passthrough cluster (it
    does nothing for requests routed anywhere else)."""
    return dfp_filter_pb2.FilterConfig(dns_cache_config=_dns_cache())


def passthrough_cluster() -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(
        name=PASSTHROUGH_CLUSTER,
        connect_timeout=seconds(CONNECT_TIMEOUT_S),
        lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        cluster_type=cluster_pb2.Cluster.CustomClusterType(
            name=DFP_CLUSTER_TYPE,
            typed_config=packed(dfp_cluster_pb2.ClusterConfig(dns_cache_config=_dns_cache())),
        ),
    )
    apply_backend_settings(cluster, None)  # the mesh's retry budget, as for any service
    return cluster


def external_clusters(spec: ExternalServiceSpec) -> list[cluster_pb2.Cluster]:
    """One cluster per host and port."""
    return [_external_cluster(host, port, spec) for host in spec.hosts for port in spec.ports]


def _external_cluster(
    host: str, port: ExternalPort, spec: ExternalServiceSpec
) -> cluster_pb2.Cluster:
    addresses = [e.address for e in spec.endpoints] or [host]
    cluster = hosts_cluster(external_cluster_name(host, port.port), addresses, port.serving_port)
    if spec.tls is not None:
        cluster.transport_socket.CopyFrom(
            upstream_server_tls(spec.tls.sni or host, spec.tls.ca_certificates)
        )
    apply_backend_settings(cluster, None)
    return cluster


def external_virtual_hosts(spec: ExternalServiceSpec) -> list[route_components_pb2.VirtualHost]:
    """Per host and port, ``host:port`` (and the bare host for port 80, which is what
    a Host header without a port means) to its cluster, with the mesh's timeout and
    retries."""
    out = []
    for host in spec.hosts:
        for port in spec.ports:
            cluster = external_cluster_name(host, port.port)
            domains = [f"{host}:{port.port}"] + ([host] if port.port == 80 else [])
            out.append(
                route_components_pb2.VirtualHost(
                    name=f"{host}:{port.port}",
                    domains=domains,
                    routes=[
                        route_components_pb2.Route(
                            name="default",
                            match=route_components_pb2.RouteMatch(prefix="/"),
                            route=route_components_pb2.RouteAction(
                                cluster=cluster,
                                timeout=seconds(HTTP_ROUTE_TIMEOUT_S),
                                retry_policy=default_retry_policy(),
                            ),
                        )
                    ],
                )
            )
    return out


def catch_all_virtual_host(mode: OutboundTrafficMode) -> route_components_pb2.VirtualHost:
    """Any host no other virtual host names: out through the forward proxy, or 502."""
    if mode is OutboundTrafficMode.ALLOW_ANY:
        route = route_components_pb2.Route(
            name="allow-any",
            match=route_components_pb2.RouteMatch(prefix="/"),
            route=route_components_pb2.RouteAction(
                cluster=PASSTHROUGH_CLUSTER,
                timeout=seconds(HTTP_ROUTE_TIMEOUT_S),
                retry_policy=default_retry_policy(),
            ),
        )
    else:
        route = route_components_pb2.Route(
            name="registry-only",
            match=route_components_pb2.RouteMatch(prefix="/"),
            direct_response=route_components_pb2.DirectResponseAction(
                status=BLOCKED_STATUS, body=base_pb2.DataSource(inline_string=BLOCKED_BODY)
            ),
            response_headers_to_add=[
                base_pb2.HeaderValueOption(
                    header=base_pb2.HeaderValue(key=EGRESS_HEADER, value="blocked"),
                    append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
                )
            ],
        )
    return route_components_pb2.VirtualHost(
        name=f"egress-{mode.value.lower().replace('_', '-')}", domains=[CATCH_ALL], routes=[route]
    )


def egress_virtual_hosts(
    mode: OutboundTrafficMode, specs: Sequence[ExternalServiceSpec]
) -> list[route_components_pb2.VirtualHost]:
    hosts = [vhost for spec in specs for vhost in external_virtual_hosts(spec)]
    hosts.append(catch_all_virtual_host(mode))
    return hosts
