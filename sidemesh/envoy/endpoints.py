"""ClusterLoadAssignments: where each outbound cluster's workloads are."""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from sidemesh.envoy import names
from sidemesh.envoy.protos import socket_address
from sidemesh.model import Service, ServiceKey, Workload


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
                if wp.name == port.port_name:
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
