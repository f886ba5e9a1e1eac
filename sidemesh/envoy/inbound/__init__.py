"""The callee's side: what a sidecar builds to receive calls for its own workload.

Owns: the inbound listeners (one per port the workload serves, with its mTLS filter
chains and the callee's HTTP filter chain), their route configurations, the
local-app clusters they lead to, and, for a captured sidecar (a pod's iptables
redirect), the capture listener that hands each connection to its listener.
Must not: build anything a caller uses (outbound clusters, endpoints, the outbound
routes are ``outbound``'s), import ``outbound`` or ``gateway``, or read a
``MeshState``: the translator hands each builder the values it needs.
"""

from sidemesh.envoy.inbound.clusters import LOCAL_APP_ADDRESS, blackhole_cluster, inbound_cluster
from sidemesh.envoy.inbound.listeners import inbound_capture_listener, inbound_listener
from sidemesh.envoy.inbound.routes import inbound_route_config

__all__ = [
    "LOCAL_APP_ADDRESS",
    "blackhole_cluster",
    "inbound_capture_listener",
    "inbound_cluster",
    "inbound_listener",
    "inbound_route_config",
]
