"""ClusterLoadAssignments: where each outbound cluster's workloads are.

An assignment goes to every caller of its service, and Envoy rejects the whole of it
if one endpoint is malformed: no endpoint of that service would change for any caller
until the bad one went away. The loader already refuses such workloads; a workload
that got past it anyway (another source, a bug) is left out here, with a warning, so
its problem stays its own."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import NamedTuple

from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from sidemesh.envoy import names
from sidemesh.envoy.protos import socket_address
from sidemesh.model import ServiceKey, Workload, parse_ip

log = logging.getLogger(__name__)

MAX_PORT = 65535


REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
"""Where a workload runs, by the labels Kubernetes nodes carry: callers prefer
endpoints of their own zone, then region, and fail over to the others."""


class Locality(NamedTuple):
    region: str = ""
    zone: str = ""


def locality_of(workload: Workload) -> Locality:
    return Locality(workload.labels.get(REGION_LABEL, ""), workload.labels.get(ZONE_LABEL, ""))


class WorkloadEndpoint(NamedTuple):
    """One workload's endpoint for one service port: all an assignment reads of a
    workload (its other labels, env or upstreams do not move it). A value, so the
    translator can key a cached assignment by it."""

    workload: str
    address: str
    port: int
    locality: Locality = Locality()


def endpoints_by_port(workloads: Iterable[Workload]) -> dict[str, tuple[WorkloadEndpoint, ...]]:
    """Where ``workloads`` serve each service port, by the port's name."""
    found: dict[str, list[WorkloadEndpoint]] = {}
    for w in workloads:
        for wp in w.ports:
            found.setdefault(wp.name, []).append(
                WorkloadEndpoint(w.name, w.address, wp.port, locality_of(w))
            )
    return {name: tuple(endpoints) for name, endpoints in found.items()}


def load_assignment(
    key: ServiceKey, port: int, endpoints: Iterable[WorkloadEndpoint]
) -> endpoint_pb2.ClusterLoadAssignment:
    """The assignment of one service port's cluster; with no endpoints an empty one, so
    the cluster warms and answers 503 rather than hanging."""
    cluster = names.outbound_cluster(key, port)
    groups: dict[Locality, list[endpoint_components_pb2.LbEndpoint]] = {}
    for endpoint in sorted(endpoints, key=lambda e: (e.locality, e.workload)):
        problem = endpoint_problem(endpoint.address, endpoint.port)
        if problem is not None:
            log.warning(
                "workload %s of %s is left out of %s: %s",
                endpoint.workload,
                key,
                cluster,
                problem,
                extra={"workload": endpoint.workload},
            )
            continue
        groups.setdefault(endpoint.locality, []).append(
            endpoint_components_pb2.LbEndpoint(
                endpoint=endpoint_components_pb2.Endpoint(
                    address=socket_address(endpoint.address, endpoint.port),
                    hostname=endpoint.workload,
                )
            )
        )
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=cluster,
        endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(region=where.region, zone=where.zone),
                lb_endpoints=members,
            )
            for where, members in groups.items()
        ]
        or [endpoint_components_pb2.LocalityLbEndpoints()],
    )


def for_caller(
    assignment: endpoint_pb2.ClusterLoadAssignment, caller: Locality
) -> endpoint_pb2.ClusterLoadAssignment:
    """``assignment`` as a caller in ``caller`` sees it: its own zone first (priority
    0), then its region, then the rest; Envoy moves traffic to the next priority as the
    healthy endpoints of one run short (and all of it when one has none left)."""

    def rank(group: endpoint_components_pb2.LocalityLbEndpoints) -> int:
        if group.locality.region == caller.region:
            return 0 if group.locality.zone == caller.zone else 1
        return 2

    ranks = sorted({rank(g) for g in assignment.endpoints})
    out = endpoint_pb2.ClusterLoadAssignment()
    out.CopyFrom(assignment)
    for group in out.endpoints:
        # Priorities must be 0, 1, ... with none skipped.
        group.priority = ranks.index(rank(group))
    return out


def endpoint_problem(address: object, port: object) -> str | None:
    """Why Envoy would refuse ``address:port`` as an endpoint, or None. Typed loosely:
    it guards against what the model's types promise but a bypass may not keep."""
    if not isinstance(address, str) or parse_ip(address) is None:
        return f"address {address!r} is not an IP address"
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= MAX_PORT:
        return f"port {port!r} is not a port number (1-{MAX_PORT})"
    return None
