"""``/clusters?format=json`` answers shaped as Envoy 1.40 writes them (per-host stats
left out: nothing here reads them)."""

from __future__ import annotations

from typing import Any


def host(address: str, port: int, hostname: str = "", **flags: bool) -> dict[str, Any]:
    """One host of a cluster; ``flags`` are Envoy's HostHealthStatus booleans, set only
    when true, as Envoy writes them."""
    return {
        "address": {"socket_address": {"address": address, "port_value": port}},
        "health_status": {**flags, "eds_health_status": "HEALTHY"},
        "weight": 1,
        "hostname": hostname,
        "locality": {},
    }


def clusters(*entries: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """An answer with the given (cluster name, hosts), after Envoy's own ``xds-grpc``."""
    statuses = [
        {"name": "xds-grpc", "host_statuses": [host("127.0.0.1", 15010)]},
        *({"name": name, "added_via_api": True, "host_statuses": hosts} for name, hosts in entries),
    ]
    return {"cluster_statuses": statuses}
