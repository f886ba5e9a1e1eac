"""Envoy resource names. They appear in logs, metrics and ``sidemesh proxy-config``,
so each says what it is: direction, port, subset, service."""

from __future__ import annotations

from sidemesh.model import ServiceKey

OUTBOUND_ROUTE_CONFIG = "outbound-http"
INBOUND_CAPTURE_LISTENER = "inbound-capture"
"""A captured sidecar's listener for everything its pod's redirect sends inbound."""
BLACKHOLE_CLUSTER = "blackhole"
"""No endpoints: where a connection to a port the workload does not serve goes (closed)."""


def outbound_cluster(key: ServiceKey, port: int, subset: str = "") -> str:
    return f"outbound|{port}|{subset}|{key}"


def inbound_cluster(key: ServiceKey, port: int) -> str:
    return f"inbound|{port}|{key.name}"


def inbound_listener(key: ServiceKey, port: int) -> str:
    return f"inbound|{port}|{key.name}"


def outbound_listener(port: int) -> str:
    return f"outbound|{port}"


def stat_prefix(name: str) -> str:
    # Envoy stat names are dot-separated; '|' and '.' inside a name would split it.
    return name.replace("|", "_").replace(".", "_")


def rate_limit_stat(service: ServiceKey, route: int | None = None) -> str:
    """The stat prefix of a service's rate limit, or of its ``route``-th route's."""
    name = f"rate_limit|{service}" if route is None else f"rate_limit|{service}|route-{route}"
    return stat_prefix(name)


def upstream_listener(port: int, key: ServiceKey) -> str:
    return f"upstream|{port}|{key}"


def gateway_listener(port: int, gateway: str) -> str:
    return f"gateway|{port}|{gateway}"
