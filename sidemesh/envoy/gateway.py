"""The entry gateway: the listeners callers outside the mesh reach, and their routes.

Owns: resolving a short-form gateway's routes (mesh.yaml ``gateways:``) to the service
ports they lead to, and its listener with its inline route configuration, by path
prefix in the order given; and the listeners of a Gateway API ``Gateway`` (HTTP, and
HTTPS terminated with the listener's certificate, chosen by SNI), with the rules of
the HTTPRoutes attached to them, translated as mesh routes are. Every HTTP connection
manager here faces the outside: the client's address is the peer's. Both route to the
services' outbound clusters.
Must not: build the clusters or endpoints it routes to (a gateway calls services as
any caller does, through ``outbound``'s, which it shares with the sidecars), or
import ``inbound``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from google.protobuf import wrappers_pb2

from sidemesh.envoy import names
from sidemesh.envoy.filters import ROUTER_ONLY, HttpFilters, http_connection_manager
from sidemesh.envoy.observability import ProxyTelemetry
from sidemesh.envoy.outbound.http_routes import http_routes
from sidemesh.envoy.outbound.routes import (
    HTTP_ROUTE_TIMEOUT_S,
    default_retry_policy,
    prefix_route_config,
)
from sidemesh.envoy.protos import packed, socket_address
from sidemesh.envoy.tls import TLS_INSPECTOR, downstream_tls_from_files
from sidemesh.model import Gateway, Service, ServiceKey, ServicePort
from sidemesh.model.policy import HTTPRoute, Policies
from sidemesh.model.policy.gateway import Listener, ListenerProtocol


class GatewayTarget(NamedTuple):
    """One route of a gateway, resolved: requests under ``prefix`` go to ``port`` of
    ``service``."""

    prefix: str
    service: ServiceKey
    port: ServicePort


def gateway_targets(
    gateway: Gateway, services: Mapping[ServiceKey, Service]
) -> tuple[GatewayTarget, ...]:
    """The gateway's routes, each to the port it names or else the service's first HTTP
    port (the loader has checked that both exist)."""
    namespace = gateway.namespace or ""
    targets = []
    for route in gateway.routes:
        key = ServiceKey(route.service, namespace)
        port = next(
            p
            for p in services[key].ports
            if (p.port == route.port if route.port else p.protocol.is_http)
        )
        targets.append(GatewayTarget(route.prefix, key, port))
    return tuple(targets)


def gateway_listener(
    gateway_name: str,
    address: str,
    port: int,
    targets: Sequence[GatewayTarget],
    filters: HttpFilters = ROUTER_ONLY,
    telemetry: ProxyTelemetry | None = None,
) -> listener_pb2.Listener:
    """The entry of callers from outside the mesh: routes by path prefix, first match
    wins. ``filters``: the edge's HTTP filters (authentication, authorization, limits)."""
    name = names.gateway_listener(port, gateway_name)
    routes = [
        (t.prefix, names.outbound_cluster(t.service, t.port.port), t.port.protocol.needs_http2)
        for t in targets
    ]
    return listener_pb2.Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=base_pb2.INBOUND,
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    http_connection_manager(
                        names.stat_prefix(name),
                        filters,
                        route_config=prefix_route_config(name, routes),
                        edge=True,
                        telemetry=telemetry,
                    )
                ]
            )
        ],
    )


# --- Gateway API Gateways ---------------------------------------------------------------


class AttachedListener(NamedTuple):
    """One listener of a Gateway document and the HTTPRoutes attached to it."""

    listener: Listener
    routes: tuple[HTTPRoute, ...]


def api_gateway_listener(
    gateway_name: str,
    address: str,
    port: int,
    attached: Sequence[AttachedListener],
    policies: Policies,
    filters: HttpFilters = ROUTER_ONLY,
    telemetry: ProxyTelemetry | None = None,
) -> listener_pb2.Listener:
    """The Envoy listener of one port of a Gateway: its listeners there (several, by
    hostname) with the rules of their routes, exactly as a mesh route's rules are
    translated. HTTP: one route configuration, a virtual host per hostname. HTTPS: a
    filter chain per listener, chosen by the TLS server name (SNI), each with its own
    certificate and the virtual hosts of its own routes. ``policies`` holds the
    FaultInjections the routes name."""
    name = names.gateway_listener(port, gateway_name)
    prefix = names.stat_prefix(name)
    https = any(a.listener.protocol is ListenerProtocol.HTTPS for a in attached)
    if not https:
        hosts = _virtual_hosts(name, port, attached, policies)
        chains = [_chain(prefix, name, hosts, filters, telemetry)]
        listener_filters = []
    else:
        chains = []
        for one in sorted(attached, key=_most_specific_first):
            tls = one.listener.tls
            assert tls is not None and tls.certificate_file and tls.key_file, "checked at load"
            chain = _chain(
                prefix,
                f"{name}|{one.listener.name}",
                _virtual_hosts(name, port, [one], policies),
                filters,
                telemetry,
            )
            if one.listener.hostname is not None:
                chain.filter_chain_match.server_names.append(one.listener.hostname)
            chain.transport_socket.CopyFrom(
                downstream_tls_from_files(tls.certificate_file, tls.key_file)
            )
            chains.append(chain)
        listener_filters = [
            listener_components_pb2.ListenerFilter(
                name=TLS_INSPECTOR, typed_config=packed(tls_inspector_pb2.TlsInspector())
            )
        ]
    return listener_pb2.Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=base_pb2.INBOUND,
        listener_filters=listener_filters,
        filter_chains=chains,
    )


def _most_specific_first(one: AttachedListener) -> tuple[bool, str]:
    return (one.listener.hostname is None, one.listener.hostname or "")


def _chain(
    stat_prefix: str,
    route_name: str,
    hosts: list[route_components_pb2.VirtualHost],
    filters: HttpFilters,
    telemetry: ProxyTelemetry | None,
) -> listener_components_pb2.FilterChain:
    config = route_pb2.RouteConfiguration(
        name=route_name,
        virtual_hosts=hosts,
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )
    return listener_components_pb2.FilterChain(
        filters=[
            http_connection_manager(
                stat_prefix, filters, route_config=config, edge=True, telemetry=telemetry
            )
        ]
    )


def _virtual_hosts(
    name: str, port: int, attached: Sequence[AttachedListener], policies: Policies
) -> list[route_components_pb2.VirtualHost]:
    """A virtual host per hostname a request may carry, with every rule that applies to
    it: a route's hostnames narrowed to its listener's (Gateway API), or the listener's
    own, or any."""
    by_host: dict[str, list[HTTPRoute]] = {}
    for one in attached:
        for route in one.routes:
            for host in route_hostnames(route.spec.hostnames, one.listener.hostname):
                found = by_host.setdefault(host, [])
                if all(r is not route for r in found):
                    found.append(route)
    hosts = []
    for host in sorted(by_host):
        rules = http_routes(
            by_host[host],
            port,
            policies,
            names.outbound_cluster,
            HTTP_ROUTE_TIMEOUT_S,
            default_retry_policy(),
        )
        domains = ["*"] if host == "*" else [host, f"{host}:{port}"]
        hosts.append(
            route_components_pb2.VirtualHost(name=f"{name}|{host}", domains=domains, routes=rules)
        )
    return hosts


def route_hostnames(route_hosts: Sequence[str], listener_host: str | None) -> list[str]:
    """The hostnames a route serves on a listener (the Gateway API's intersection): a
    route without hostnames takes the listener's; a listener without one takes the
    route's; else those of the route the listener's covers (``*.example.com`` covers
    ``a.example.com``), or the listener's if a route's wildcard covers it."""
    if not route_hosts:
        return [listener_host or "*"]
    if listener_host is None:
        return list(route_hosts)
    found = [h for h in route_hosts if _covers(listener_host, h)]
    if not found and any(_covers(h, listener_host) for h in route_hosts):
        found = [listener_host]
    return found


def _covers(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    return pattern.startswith("*.") and host.endswith(pattern[1:]) and not host.startswith("*.")
