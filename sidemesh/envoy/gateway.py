"""The entry gateway: the listener callers outside the mesh reach, and its routes.

Owns: resolving a gateway's routes to the service ports they lead to, and the
gateway's listener (its HTTP connection manager faces the outside: the client's
address is the peer's) with its inline route configuration, by path prefix in the
order given, to the services' outbound clusters.
Must not: build the clusters or endpoints it routes to (a gateway calls services as
any caller does, through ``outbound``'s, which it shares with the sidecars), or
import ``inbound``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2

from sidemesh.envoy import names
from sidemesh.envoy.filters import ROUTER_ONLY, HttpFilters, http_connection_manager
from sidemesh.envoy.outbound.routes import prefix_route_config
from sidemesh.envoy.protos import socket_address
from sidemesh.model import Gateway, Service, ServiceKey, ServicePort


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
                    )
                ]
            )
        ],
    )
