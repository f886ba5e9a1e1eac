"""The caller's side: what a sidecar (or a gateway) builds to call services.

Owns: the outbound listener the app sends to and the upstream listeners (local ports
that lead to one service), the outbound route configuration (virtual hosts per
service port, timeouts, retries), the outbound clusters (one per service port, with
mTLS to the service's identities and the retry budget), the endpoints (load
assignments) of those clusters, the way out of the mesh (``egress``: declared
ExternalServices and the outboundTrafficPolicy's catch-all), and which services a
sidecar holds when it learns them on demand (``demand``).
Must not: build anything only the callee uses (inbound listeners, local-app clusters
are ``inbound``'s), import ``inbound`` or ``gateway``, or read a ``MeshState``: the
translator hands each builder the values it needs.
"""

from sidemesh.envoy.outbound.clusters import outbound_cluster
from sidemesh.envoy.outbound.endpoints import WorkloadEndpoint, endpoints_by_port, load_assignment
from sidemesh.envoy.outbound.listeners import (
    OUTBOUND_BIND_ADDRESS,
    outbound_listener,
    upstream_listener,
)
from sidemesh.envoy.outbound.routes import (
    clusters_of,
    default_retry_policy,
    outbound_route_config,
    prefix_route_config,
    virtual_hosts,
)

__all__ = [
    "OUTBOUND_BIND_ADDRESS",
    "WorkloadEndpoint",
    "clusters_of",
    "default_retry_policy",
    "endpoints_by_port",
    "load_assignment",
    "outbound_cluster",
    "outbound_listener",
    "outbound_route_config",
    "prefix_route_config",
    "upstream_listener",
    "virtual_hosts",
]
