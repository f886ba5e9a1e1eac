"""ClusterLoadAssignments: where each outbound cluster's workloads are.

An assignment goes to every caller of its service, and Envoy rejects the whole of it
if one endpoint is malformed: no endpoint of that service would change for any caller
until the bad one went away. The loader already refuses such workloads; a workload
that got past it anyway (another source, a bug) is left out here, with a warning, so
its problem stays its own."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from sidemesh.envoy import names
from sidemesh.envoy.protos import socket_address
from sidemesh.model import Service, ServiceKey, Workload, parse_ip

log = logging.getLogger(__name__)

MAX_PORT = 65535


def load_assignments(
    key: ServiceKey, service: Service, workloads: Sequence[Workload]
) -> list[endpoint_pb2.ClusterLoadAssignment]:
    """One assignment per service port; a service with no workloads gets empty ones,
    so its cluster warms and answers 503 rather than hanging."""
    out = []
    for port in service.ports:
        lb_endpoints = []
        for workload in sorted(workloads, key=lambda w: w.name):
            for wp in workload.ports:
                if wp.name != port.port_name:
                    continue
                problem = endpoint_problem(workload.address, wp.port)
                if problem is not None:
                    log.warning(
                        "workload %s of %s is left out of %s: %s",
                        workload.name,
                        key,
                        names.outbound_cluster(key, port.port),
                        problem,
                        extra={"workload": workload.name},
                    )
                    continue
                lb_endpoints.append(
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(
                            address=socket_address(workload.address, wp.port),
                            hostname=workload.name,
                        )
                    )
                )
        out.append(
            endpoint_pb2.ClusterLoadAssignment(
                cluster_name=names.outbound_cluster(key, port.port),
                endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints)],
            )
        )
    return out


def endpoint_problem(address: object, port: object) -> str | None:
    """Why Envoy would refuse ``address:port`` as an endpoint, or None. Typed loosely:
    it guards against what the model's types promise but a bypass may not keep."""
    if not isinstance(address, str) or parse_ip(address) is None:
        return f"address {address!r} is not an IP address"
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= MAX_PORT:
        return f"port {port!r} is not a port number (1-{MAX_PORT})"
    return None
