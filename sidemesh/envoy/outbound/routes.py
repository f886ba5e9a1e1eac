"""Outbound route configurations: the shared one routes by Host/authority to each
service port; a prefix one (an upstream port's, a gateway's) by path prefix. Both
carry the caller's timeouts and retries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.extensions.retry.priority.previous_priorities.v3 import (
    previous_priorities_config_pb2,
)
from google.protobuf import wrappers_pb2

from sidemesh.envoy import names
from sidemesh.envoy.outbound.backend_policy import hash_policy
from sidemesh.envoy.outbound.http_routes import applicable_routes, grpc_routes, http_routes
from sidemesh.envoy.protos import ads_config_source, packed, seconds
from sidemesh.model import ServiceKey, ServicePort
from sidemesh.model.policy import GRPCRoute, HTTPRoute, Policies
from sidemesh.model.policy.backend import HashOn

HTTP_ROUTE_TIMEOUT_S = 15.0
"""Envoy's own default for a unary request; streaming ports (http2, grpc) get none."""


DEFAULT_RETRY_ON = (
    "connect-failure,refused-stream,unavailable,cancelled,reset,retriable-status-codes"
)
"""What a mesh retries unless told otherwise: a request that got no response at all
(connection refused or cut, stream reset), and 503, which a peer sidecar answers when
its app is down (as Istio does).

``reset``, not ``reset-before-request``: a peer sidecar that dies cuts off the requests
it was carrying after they were sent, and those are retried only by ``reset`` (Envoy:
"the upstream server does not respond at all (disconnect/reset/read timeout)"). No
response byte has reached the app's caller then, so the retry is invisible to it; but
the peer's app may have acted on the request, so a non-idempotent request can be
applied twice, as with a 503 retry. Measured: killing one of two replicas' Envoy at
250 requests/s, ``reset-before-request`` failed 5-6 requests this way, ``reset`` none."""
RETRIABLE_STATUS_CODES = (503,)
DEFAULT_RETRIES = 2
PREVIOUS_HOSTS_PREDICATE = "envoy.retry_host_predicates.previous_hosts"
PREVIOUS_PRIORITIES = "envoy.retry_priorities.previous_priorities"


NO_POLICIES = Policies()


def default_retry_policy() -> route_components_pb2.RetryPolicy:
    """Retry a request that never reached an app, on another workload if there is one."""
    return route_components_pb2.RetryPolicy(
        retry_on=DEFAULT_RETRY_ON,
        retriable_status_codes=list(RETRIABLE_STATUS_CODES),
        num_retries=wrappers_pb2.UInt32Value(value=DEFAULT_RETRIES),
        retry_host_predicate=[
            route_components_pb2.RetryPolicy.RetryHostPredicate(
                name=PREVIOUS_HOSTS_PREDICATE,
                typed_config=packed(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        ],
        host_selection_retry_max_attempts=3,
        # A retry after a failure in the caller's own locality goes to the next one:
        # a zone whose hosts just vanished fails over at once, not after they are
        # ejected or their leases expire.
        retry_priority=route_components_pb2.RetryPolicy.RetryPriority(
            name=PREVIOUS_PRIORITIES,
            typed_config=packed(
                previous_priorities_config_pb2.PreviousPrioritiesConfig(update_frequency=1)
            ),
        ),
    )


def default_port(ports: Sequence[ServicePort]) -> ServicePort | None:
    """The port a Host without a port means: 80 if served, else the first HTTP port."""
    http_ports = [p for p in ports if p.protocol.is_http]
    for port in http_ports:
        if port.port == 80:
            return port
    return http_ports[0] if http_ports else None


def host_names(key: ServiceKey, port: ServicePort, *, default: bool, short: bool) -> list[str]:
    """Every Host an app may use for this service port. ``short`` adds the bare name
    (``reviews``), which only means this service inside its own namespace."""
    bases = [f"{key.name}.{key.namespace}", f"{key.name}.{key.namespace}.svc"]
    if short:
        bases.insert(0, key.name)
    domains = [f"{base}:{port.port}" for base in bases]
    if default:
        domains = bases + domains
    return domains


def virtual_hosts(
    key: ServiceKey,
    ports: Sequence[ServicePort],
    *,
    short: bool,
    caller_namespace: str | None = None,
    routes: Sequence[HTTPRoute | GRPCRoute] = (),
    policies: Policies = NO_POLICIES,
    hash_on: HashOn | None = None,
) -> list[route_components_pb2.VirtualHost]:
    """One virtual host per HTTP port of a service: the rules of the Gateway API
    ``routes`` that apply to that port (``http_routes`` says which and in which order),
    or, with none, one route to the whole service. ``caller_namespace`` matters only
    with consumer routes (None: the service's own). ``policies`` holds the faults the
    routes name; ``hash_on`` is the service's session affinity (RingHash, Maglev)."""
    default = default_port(ports)
    retry = default_retry_policy()
    out = []
    for port in ports:
        if not port.protocol.is_http:
            continue
        timeout = 0.0 if port.protocol.needs_http2 else HTTP_ROUTE_TIMEOUT_S
        attached = applicable_routes(routes, key, port.port, caller_namespace or key.namespace)
        http = [r for r in attached if isinstance(r, HTTPRoute)]
        grpc = [r for r in attached if isinstance(r, GRPCRoute)]
        if http or grpc:
            envoy_routes = grpc_routes(grpc, port.port, policies, names.outbound_cluster, retry)
            envoy_routes += http_routes(
                http, port.port, policies, names.outbound_cluster, timeout, retry
            )
        else:
            envoy_routes = [
                route_components_pb2.Route(
                    name="default",
                    match=route_components_pb2.RouteMatch(prefix="/"),
                    route=route_components_pb2.RouteAction(
                        cluster=names.outbound_cluster(key, port.port),
                        timeout=seconds(timeout),
                        retry_policy=retry,
                    ),
                )
            ]
        if hash_on is not None:
            for envoy_route in envoy_routes:
                if envoy_route.HasField("route"):
                    envoy_route.route.hash_policy.append(hash_policy(hash_on))
        out.append(
            route_components_pb2.VirtualHost(
                name=f"{key}:{port.port}",
                domains=host_names(key, port, default=port is default, short=short),
                routes=envoy_routes,
            )
        )
    return out


def clusters_of(vhost: route_components_pb2.VirtualHost) -> list[str]:
    """Every cluster a virtual host's routes send to: their cluster, each weighted
    share, each mirror."""
    found = []
    for route in vhost.routes:
        action = route.route
        if action.cluster:
            found.append(action.cluster)
        found += [weighted.name for weighted in action.weighted_clusters.clusters]
        found += [m.cluster for m in action.request_mirror_policies if m.cluster]
    return found


def outbound_route_config(
    hosts: Iterable[route_components_pb2.VirtualHost], *, on_demand: bool = False
) -> route_pb2.RouteConfiguration:
    """``on_demand``: the mesh's services' virtual hosts come one by one over VHDS, as
    the sidecar needs them (``outbound.demand``); ``hosts`` are then only those every
    caller has (ExternalServices')."""
    config = route_pb2.RouteConfiguration(
        name=names.OUTBOUND_ROUTE_CONFIG,
        virtual_hosts=list(hosts),
        # Clusters arrive over CDS; checking them here would reject a route pushed a
        # moment before its cluster.
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )
    if on_demand:
        config.vhds.config_source.CopyFrom(ads_config_source())
    return config


def prefix_route_config(
    name: str, routes: list[tuple[str, str, bool]]
) -> route_pb2.RouteConfiguration:
    """One virtual host for any Host, routing ``(prefix, cluster, streaming)`` in the
    given order (first match wins): a gateway's routes, or an upstream port's."""
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=name,
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        name=f"{prefix} -> {cluster}",
                        match=route_components_pb2.RouteMatch(prefix=prefix),
                        route=route_components_pb2.RouteAction(
                            cluster=cluster,
                            timeout=seconds(0.0 if streaming else HTTP_ROUTE_TIMEOUT_S),
                            retry_policy=default_retry_policy(),
                        ),
                    )
                    for prefix, cluster, streaming in routes
                ],
            )
        ],
    )
