"""Envoy's ``/clusters?format=json``, read: each host of each outbound cluster, with
what this Envoy thinks of its health.

Only the names Envoy reports are read, never our own translation: an outbound
cluster is ``outbound|<port>|<subset>|<service>.<namespace>`` (DESIGN.md, Names), which
every room that shows a cluster to a person relies on too."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sidemesh.model.refs import ServiceKey

OUTBOUND = "outbound"


class HealthFlag(StrEnum):
    """What keeps a caller's Envoy from sending a host traffic (or may soon)."""

    EJECTED = "ejected"
    """Outlier detection took it out for a while (passive: from real responses)."""
    FAILING_HEALTH_CHECK = "failingHealthCheck"
    """It failed the active HTTP health check of a BackendPolicy."""
    DEGRADED = "degraded"
    """Its health check answered degraded: used only when no healthy host is left."""
    AWAITING_HEALTH_CHECK = "awaitingHealthCheck"
    """New to this caller and not yet checked (no traffic until its first check)."""


# Envoy's HostHealthStatus fields (admin.v3.HostHealthStatus), true when set.
_ENVOY_FLAGS = {
    "failed_outlier_check": HealthFlag.EJECTED,
    "failed_active_health_check": HealthFlag.FAILING_HEALTH_CHECK,
    "failed_active_degraded_check": HealthFlag.DEGRADED,
    "pending_active_hc": HealthFlag.AWAITING_HEALTH_CHECK,
}


@dataclass(frozen=True)
class HostView:
    """One endpoint of a service port as one caller's Envoy sees it."""

    service: ServiceKey
    port: int
    """The service port the cluster is for."""
    address: str
    endpoint_port: int
    flags: frozenset[HealthFlag]


def outbound_hosts(clusters: Any) -> Iterator[HostView]:
    """The hosts of every outbound cluster of a ``/clusters?format=json`` answer. The
    answer comes from another process: anything not shaped as Envoy writes it is
    skipped, not trusted."""
    statuses = clusters.get("cluster_statuses") if isinstance(clusters, dict) else None
    for cluster in statuses if isinstance(statuses, list) else ():
        if not isinstance(cluster, dict):
            continue
        parsed = parse_outbound_cluster(str(cluster.get("name", "")))
        if parsed is None:
            continue
        service, port = parsed
        hosts = cluster.get("host_statuses")
        for host in hosts if isinstance(hosts, list) else ():
            endpoint = _socket_address(host)
            if endpoint is not None:
                yield HostView(service, port, *endpoint, _flags(host.get("health_status")))


def parse_outbound_cluster(name: str) -> tuple[ServiceKey, int] | None:
    """(service, service port) of an outbound cluster's name, or None for any other
    cluster (inbound, egress to a host outside the mesh, Envoy's own)."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] != OUTBOUND or not parts[1].isdigit():
        return None
    service, dot, namespace = parts[3].partition(".")
    # Service and namespace are DNS labels: a dot more is an external host name.
    if not (service and dot and namespace) or "." in namespace:
        return None
    return ServiceKey(service, namespace), int(parts[1])


def normalized_address(address: str) -> str:
    """One spelling per IP address (``::1`` whether written so or longer), so Envoy's
    addresses and the mesh's compare equal."""
    try:
        return ipaddress.ip_address(address).compressed
    except ValueError:
        return address


def _socket_address(host: Any) -> tuple[str, int] | None:
    if not isinstance(host, dict):
        return None
    address = host.get("address")
    socket = address.get("socket_address") if isinstance(address, dict) else None
    if not isinstance(socket, dict):
        return None
    ip, port = socket.get("address"), socket.get("port_value")
    if not isinstance(ip, str) or not isinstance(port, int):
        return None
    return normalized_address(ip), port


def _flags(status: Any) -> frozenset[HealthFlag]:
    if not isinstance(status, dict):
        return frozenset()
    flags = {flag for field, flag in _ENVOY_FLAGS.items() if status.get(field) is True}
    if HealthFlag.AWAITING_HEALTH_CHECK in flags:
        # Envoy marks a new host failed until its first check: it has not failed one.
        flags.discard(HealthFlag.FAILING_HEALTH_CHECK)
    return frozenset(flags)
