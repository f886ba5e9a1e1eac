"""``Translator``: MeshState + proxy → ``ProxyResources``, reusing earlier work.

Which resources a proxy gets. A sidecar: its inbound side (per port its workload
serves, a listener and the local-app cluster behind it) and its outbound side (the
listener its app sends to, one listener per upstream), over what it shares with every
proxy of its namespace: every service's outbound clusters and endpoints, and the
outbound route configuration (where short names mean that namespace's services). A
gateway: its listener, over the shared clusters and endpoints.

The memo. Every cached entry (one resource, or a service's virtual hosts) is keyed by
everything it is built from, and its builder is given nothing but that key, so no input
can be missing from a key (the idea of Istio's ``cluster_cache.go``: a cached cluster is
keyed by everything it was built from; nothing else invalidates it). A changed input
makes a different key, so a new entry; no rule ever invalidates one. Keys are
NamedTuples of values (names, port numbers, modes, identities, frozen model parts such
as a ``ServicePort``) compared with ``==``; an input that ``MeshState.reuse_unchanged``
kept the very same object compares by identity first (tuples do), so an unchanged input
costs a hash and a pointer comparison. A key holds what its builder reads, not the whole
model object it comes from: an outbound cluster reads one port of a service, the
service's mTLS mode and its identities (not its other ports or fields); a load
assignment reads, of each workload, its name, address and port for that service port
(``WorkloadEndpoint``), not its labels or upstreams.

One step is keyed by identity instead (``_Same``): a service's workloads
(``_BackendsKey``), from which its identities and endpoints are derived. Deriving them
afresh for every workload at every state is what would cost (10,000 workloads: several
milliseconds a push), and a ``Workload`` cannot be hashed (dict fields); the derived
values then key the clusters and assignments, so a workload change that moves neither
(a label, an upstream) derives again but rebuilds no resource.

A new input (a policy kind) is added to the key of each entry it affects (as a value,
or in ``_Same`` if it cannot be hashed) and passed on by that entry's builder; nothing
else changes. A BackendPolicy goes into
``_ClusterKey`` (and ``_InboundListenerKey`` for its rate limits); an HTTPRoute or
GRPCRoute into ``_ServiceRoutes``, so into the virtual hosts and every route
configuration that holds them; AuthorizationPolicy and RequestAuthentication into
``_InboundListenerKey``, whose builder turns them into ``filters.HttpFilters``. How
long entries are kept is ``_Memo``'s business, explained there.
"""

from __future__ import annotations

from collections import ChainMap, Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, NamedTuple, TypeVar

from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.on_demand.v3 import on_demand_pb2

from sidemesh.envoy import names
from sidemesh.envoy.filters import ROUTER_ONLY, HttpFilters
from sidemesh.envoy.gateway import (
    AttachedListener,
    GatewayTarget,
    api_gateway_listener,
    gateway_listener,
    gateway_targets,
)
from sidemesh.envoy.inbound import (
    blackhole_cluster,
    inbound_capture_listener,
    inbound_cluster,
    inbound_listener,
)
from sidemesh.envoy.inbound.authentication import jwks_cluster, jwks_uris, jwt_authentication
from sidemesh.envoy.inbound.authorization import rbac_filters
from sidemesh.envoy.inbound.rate_limit import local_rate_limit
from sidemesh.envoy.inbound.routes import route_rate_limits
from sidemesh.envoy.observability import ProxyTelemetry, collector_cluster
from sidemesh.envoy.outbound import (
    WorkloadEndpoint,
    clusters_of,
    endpoints_by_port,
    load_assignment,
    outbound_cluster,
    outbound_listener,
    outbound_route_config,
    upstream_listener,
    virtual_hosts,
)
from sidemesh.envoy.outbound.demand import (
    Caller,
    Reason,
    alias,
    anchor_virtual_host,
    denied_virtual_host,
    for_one_host,
    host_of,
    may_call,
    names_caller,
    resolve_host,
    serves_host,
)
from sidemesh.envoy.outbound.egress import (
    catch_all_virtual_host,
    egress_virtual_hosts,
    external_clusters,
    external_virtual_hosts,
    forward_proxy_filter,
    passthrough_cluster,
)
from sidemesh.envoy.outbound.endpoints import Locality, for_caller, locality_of
from sidemesh.envoy.outbound.listeners import CapturedTcp
from sidemesh.envoy.proxy import ProxyId
from sidemesh.envoy.resources import ADS_ORDER, Resource, ResourceType
from sidemesh.errors import TranslationError
from sidemesh.identity import SpiffeId
from sidemesh.model import (
    INBOUND_CAPTURE_PORT,
    AuthorizationDefault,
    Gateway,
    MeshState,
    MtlsMode,
    OutboundTrafficMode,
    Service,
    ServiceKey,
    ServicePort,
    Workload,
)
from sidemesh.model.policy import (
    AuthorizationPolicy,
    BackendPolicy,
    FaultInjection,
    GRPCRoute,
    HTTPRoute,
    Policies,
    RequestAuthentication,
)
from sidemesh.model.policy.backend import BackendSettings, HashOn, RateLimit
from sidemesh.model.policy.common import services_targeted
from sidemesh.model.policy.external import ExternalServiceSpec
from sidemesh.model.policy.gateway import APIGateway, Listener
from sidemesh.model.policy.telemetry import (
    LoggedRequests,
    TelemetrySettings,
    namespace_settings,
    settings_by_service,
)

ResourceMap = Mapping[str, Resource]


_EMPTY: ResourceMap = MappingProxyType({})


@dataclass(frozen=True)
class ProxyResources:
    """Everything one proxy is sent, by type and name: its own resources (``local``)
    over those it shares with every proxy of its namespace (``shared``, the very same
    mapping object for all of them, so what holds for it is checked once)."""

    local: Mapping[ResourceType, ResourceMap]
    shared: Mapping[ResourceType, ResourceMap] = field(default_factory=dict)
    held: Mapping[ServiceKey, Reason] | None = None
    """On demand: the services the proxy holds and why (None: it is sent the whole
    mesh, as a gateway or a state-of-the-world sidecar is)."""
    aliases: Mapping[str, str | None] = field(default_factory=dict)
    """On demand: each Host the proxy asked for (``outbound-http/<host>``), with the
    virtual host that answers it (None: no such host; Envoy then answers 404)."""
    by_type: Mapping[ResourceType, ResourceMap] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        merged: dict[ResourceType, ResourceMap] = {}
        for rtype in ADS_ORDER:
            local, shared = self.local.get(rtype, _EMPTY), self.shared.get(rtype, _EMPTY)
            # Views, not copies: the shared maps are never copied per proxy.
            merged[rtype] = (
                ChainMap(local, shared)  # type: ignore[arg-type]  # read-only use
                if local and shared
                else local or shared
            )
        object.__setattr__(self, "by_type", MappingProxyType(merged))

    def __getitem__(self, rtype: ResourceType) -> ResourceMap:
        return self.by_type[rtype]

    def with_extra(self, *extra: Resource) -> ProxyResources:
        """A copy with ``extra`` resources added to the proxy's own."""
        local = {t: dict(self.local.get(t, _EMPTY)) for t in ADS_ORDER}
        for res in extra:
            local[res.type][res.name] = res
        return ProxyResources(
            {t: MappingProxyType(m) for t, m in local.items()},
            self.shared,
            self.held,
            self.aliases,
        )


# --- keys: one per cached kind, each naming every input of its entry -----------------

T = TypeVar("T")


class _Same(Generic[T]):
    """Model objects in a key, compared by identity rather than by value. Exact for
    them: ``MeshState.reuse_unchanged`` keeps an unchanged object the very same one,
    and a changed one is a new object, so a new key. O(1) per object where ``==`` would
    walk every field, and it takes objects that cannot be hashed (a ``Workload``'s dict
    fields). The key holds the objects, so their ids are not reused while it lives."""

    __slots__ = ("_hash", "objects")

    def __init__(self, objects: tuple[T, ...]) -> None:
        self.objects = objects
        self._hash = hash(tuple(map(id, objects)))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _Same) and other.objects is self.objects:
            return True  # the very same tuple: MeshState keeps an unchanged one
        return (
            isinstance(other, _Same)
            and len(other.objects) == len(self.objects)
            and all(a is b for a, b in zip(self.objects, other.objects, strict=True))
        )


class _BackendsKey(NamedTuple):
    """A service's workloads, as its callers see them."""

    trust_domain: str
    workloads: _Same[Workload]


class _Backends(NamedTuple):
    """What callers of a service need of its workloads: not a resource, the inputs of
    the service's clusters and endpoints, derived once per change of its workloads (the
    cheap, identity-keyed step) so that the keys of the resources can name values."""

    identities: tuple[str, ...]
    """Whom a caller accepts as the service: its workloads' SPIFFE IDs."""
    endpoints: Mapping[str, tuple[WorkloadEndpoint, ...]]
    """By service port name."""


class _ClusterKey(NamedTuple):
    """The outbound cluster of one service port."""

    service: ServiceKey
    port: ServicePort
    mtls: MtlsMode
    """The service's own mode, else the mesh's: plaintext or mTLS to it."""
    identities: tuple[str, ...]
    """The SPIFFE IDs of its workloads: whom a caller accepts as the service."""
    backend: BackendSettings | None
    """Its BackendPolicy's settings (load balancing, circuit breaking, outlier
    detection, health checks, retry budget)."""


class _EndpointsKey(NamedTuple):
    """The load assignment of one service port's cluster."""

    service: ServiceKey
    port: int
    endpoints: tuple[WorkloadEndpoint, ...]


class _ServiceRoutes(NamedTuple):
    """What a service's virtual hosts are built from, wherever they are used."""

    service: ServiceKey
    ports: tuple[ServicePort, ...]
    routes: _Same[HTTPRoute | GRPCRoute]
    """The Gateway API routes whose parentRefs name the service."""
    faults: _Same[FaultInjection]
    """The FaultInjections those routes name (none if they name none)."""
    hash_on: HashOn | None
    """Its BackendPolicy's session affinity: the routes carry the hash policy."""
    consumer: bool
    """Some route is a consumer route (another namespace's): the view differs by
    the caller's namespace."""


class _VirtualHostsKey(NamedTuple):
    service: _ServiceRoutes
    short: bool
    """Whether the bare name (``reviews``) means this service: for its own namespace."""
    caller_namespace: str | None
    """Set only where consumer routes make the namespace matter."""


class _EgressKey(NamedTuple):
    """The way out of the mesh, the same for every namespace."""

    mode: OutboundTrafficMode
    externals: tuple[ExternalServiceSpec, ...]


class _DeniedHostKey(NamedTuple):
    """The answer to a Host of a service the caller may not call."""

    host: str
    service: ServiceKey


class _OutsideHostKey(NamedTuple):
    """The answer to a Host that is no mesh service: the catch-all, for that Host."""

    host: str
    mode: OutboundTrafficMode


class _RouteConfigKey(NamedTuple):
    """The outbound route configuration of the proxies of one namespace."""

    virtual_hosts: tuple[_VirtualHostsKey, ...]
    """Every service's, in the order of their keys, each as seen from the namespace."""
    egress: _EgressKey


class _OutboundListenerKey(NamedTuple):
    port: int
    telemetry: ProxyTelemetry
    """The spans of the calls its workload makes."""
    faults: bool
    """Some route injects faults: the chain needs the fault filter."""
    forward_proxy: bool
    """Calls may leave the mesh to any host (ALLOW_ANY): the chain resolves them."""
    on_demand: bool = False
    """The sidecar learns services as its app calls them (``outbound.demand``)."""
    captured: tuple[CapturedTcp, ...] | None = None
    """Its pod's outbound connections are redirected to it: these go to TCP services."""


class _UpstreamListenerKey(NamedTuple):
    local_port: int
    service: ServiceKey
    port: ServicePort
    telemetry: ProxyTelemetry


class _InboundClusterKey(NamedTuple):
    service: ServiceKey
    port: ServicePort
    app_port: int


class _InboundListenerKey(NamedTuple):
    service: ServiceKey
    port: ServicePort
    address: str
    endpoint_port: int
    mtls: MtlsMode
    trust_domain: str
    """Whose client certificates the listener accepts."""
    rate_limit: RateLimit | None
    """The service's BackendPolicy rate limit, enforced here, by the callee."""
    authorization: _Same[AuthorizationPolicy]
    """The AuthorizationPolicies that apply to the service (by name)."""
    default_authorization: AuthorizationDefault
    authentication: _Same[RequestAuthentication]
    """The RequestAuthentications that apply to the service (by name)."""
    telemetry: ProxyTelemetry
    """The spans of the calls it receives."""
    capture: bool
    """Reached through the capture listener (a pod's redirect), binding no port."""


class _GatewayListenerKey(NamedTuple):
    name: str
    address: str
    port: int
    targets: tuple[GatewayTarget, ...]
    telemetry: ProxyTelemetry


class _ApiGatewayListenerKey(NamedTuple):
    """One port of a Gateway API Gateway."""

    name: str
    address: str
    port: int
    listeners: _Same[Listener]
    """Its listeners on this port (by identity: they hold dicts, and an unchanged
    Gateway document is kept the same object)."""
    routes: tuple[_Same[HTTPRoute], ...]
    """Per listener, the HTTPRoutes attached to it."""
    faults: _Same[FaultInjection]
    """The FaultInjections those routes name."""
    telemetry: ProxyTelemetry


# --- the memo -------------------------------------------------------------------------

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Entry(Generic[V]):
    __slots__ = ("used", "value")

    def __init__(self, value: V, used: int) -> None:
        self.value = value
        self.used = used
        """The last generation (state) that looked it up."""


class _Memo(Generic[K, V]):
    """Values by the key that names every input of each; kept for the last two states.

    Why so: an entry is worth keeping while a state may still use it. Each new
    ``MeshState`` starts a generation; a lookup stamps the entry with it; a new
    generation drops what the one ending now did not use. So the memo holds what the
    latest state uses plus at most what the state before it used: its size follows the
    mesh, never the history of edits, with no bound to tune. (A bounded LRU would need
    a bound above one state's entries, 1,000s with 1,000 services, or it would evict at
    every push what the next proxy needs; and above it, it keeps dead entries.) A proxy
    that went away costs nothing: what it alone used is gone two states later, and
    rebuilt if it comes back. ``Publisher`` translates every connected proxy for every
    state, so no live proxy's entries age out. An entry that only another entry's
    builder uses must be looked up whenever that one is (the virtual hosts, in
    ``_shared_view``), or it would age out while its user is kept.

    One dict with a stamp per entry, not a dict per generation: a hit then hashes its
    key once, not three times (get, move, insert), and keys are hashed at every state
    for every service."""

    def __init__(self, kind: str, build: Callable[[K], V], builds: Counter[str]) -> None:
        self.kind = kind
        self._build = build
        self._builds = builds
        self._entries: dict[K, _Entry[V]] = {}
        self._generation = 0

    def __call__(self, key: K) -> V:
        return self.entry(key).value

    def entry(self, key: K) -> _Entry[V]:
        """The entry for ``key``, built if there is none, stamped as used now."""
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(self._build(key), self._generation)
            self._builds[self.kind] += 1
            self._entries[key] = entry
        else:
            entry.used = self._generation
        return entry

    def keep(self, entry: _Entry[V]) -> None:
        """Stamp an entry looked up in an earlier state as used by this one, as a
        lookup of its key would, without hashing the key again."""
        entry.used = self._generation

    def next_generation(self) -> None:
        ending = self._generation
        self._entries = {k: e for k, e in self._entries.items() if e.used == ending}
        self._generation += 1

    def __len__(self) -> int:
        return len(self._entries)


BACKENDS = "backends"
OUTBOUND_CLUSTER = "outbound cluster"
ENDPOINTS = "endpoints"
VIRTUAL_HOSTS = "virtual hosts"
OUTBOUND_ROUTES = "outbound routes"
OUTBOUND_LISTENER = "outbound listener"
UPSTREAM_LISTENER = "upstream listener"
INBOUND_CLUSTER = "inbound cluster"
INBOUND_LISTENER = "inbound listener"
GATEWAY_LISTENER = "gateway listener"
API_GATEWAY_LISTENER = "Gateway listener"
EXTERNAL_CLUSTERS = "external clusters"
JWKS_CLUSTER = "JWKS cluster"
COLLECTOR = "collector cluster"
ON_DEMAND_VHOSTS = "on-demand virtual hosts"
ON_DEMAND_ROUTES = "on-demand outbound routes"
HOST_ANSWER = "host answer"
"""The kinds ``Translator.builds`` counts, one per memo."""


_Kept = list[tuple[_Memo[Any, Any], _Entry[Any]]]
"""Memo entries a step used, to stamp again when the step is reused as it is."""


@dataclass
class _ServiceStep:
    """One service's part of a state (its clusters, its endpoints and what its
    virtual hosts are built from), with the inputs it was made from. The next state
    reuses it when every input is the very same object (``reuse_unchanged`` keeps
    unchanged ones so): an endpoint change of one service then costs a few identity
    checks for each other service, not the hashing of their keys."""

    service: Service
    members: tuple[Workload, ...]
    trust_domain: str
    mtls: MtlsMode
    settings: BackendSettings | None
    routes_in: tuple[HTTPRoute | GRPCRoute, ...]
    faults_in: tuple[FaultInjection, ...]
    clusters: list[Resource]
    endpoints: list[Resource]
    routes: _ServiceRoutes
    kept: _Kept

    def reusable(
        self,
        service: Service,
        members: tuple[Workload, ...],
        trust_domain: str,
        mtls: MtlsMode,
        settings: BackendSettings | None,
        routes: tuple[HTTPRoute | GRPCRoute, ...],
        faults: tuple[FaultInjection, ...],
    ) -> bool:
        return (
            self.service is service
            and self.members is members
            and self.trust_domain == trust_domain
            and self.mtls is mtls
            and self.settings is settings
            and _same_items(self.routes_in, routes)
            and _same_items(self.faults_in, faults)
        )


@dataclass
class _RouteView:
    """A namespace's outbound route configuration and what it was made from."""

    services: tuple[_ServiceRoutes, ...]
    egress: _EgressKey
    route: Resource
    kept: _Kept


def _same_items(a: Sequence[object], b: Sequence[object]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


NO_LOCALITY = Locality()


@dataclass
class _Shared:
    """What the proxies of one MeshState share, assembled once per state from the
    memos' entries; kept for that state only (the state is its key, by identity)."""

    state: MeshState
    clusters: ResourceMap
    endpoints: ResourceMap
    services: tuple[_ServiceRoutes, ...]
    egress: _EgressKey
    """The mesh's outboundTrafficPolicy and ExternalServices."""
    faults: bool = False
    """The mesh has FaultInjections: callers' chains carry the fault filter."""
    rate_limits: Mapping[ServiceKey, RateLimit] = field(default_factory=dict)
    """Each rate-limited service's limit, from its BackendPolicy."""
    authorization: Mapping[ServiceKey, _Same[AuthorizationPolicy]] = field(default_factory=dict)
    """The AuthorizationPolicies of each service that has any."""
    authentication: Mapping[ServiceKey, _Same[RequestAuthentication]] = field(default_factory=dict)
    """The RequestAuthentications of each service that has any."""
    telemetry: Mapping[ServiceKey, TelemetrySettings] = field(default_factory=dict)
    """Each service a Telemetry document names or covers, with what it sets."""
    views: dict[tuple[str | None, Locality], Mapping[ResourceType, ResourceMap]] = field(
        default_factory=dict
    )
    local_endpoints: dict[Locality, ResourceMap] = field(default_factory=dict)
    """The endpoints as callers in each locality see them (their own zone first)."""
    owners: Mapping[str, ServiceKey] = field(default_factory=dict)
    """The service of each mesh service's outbound cluster, by cluster name."""
    outside_clusters: ResourceMap = field(default_factory=dict)
    """The clusters that lead out of the mesh (ExternalServices, the passthrough) or to
    the tracing collector: every caller has them, on demand or not."""
    captured_tcp: Mapping[ServiceKey, tuple[CapturedTcp, ...]] = field(default_factory=dict)
    """Each service with a TCP port: the addresses a captured app may dial it at."""


class Translator:
    """Translates mesh states for many proxies. Not thread-safe; one per control plane."""

    def __init__(self) -> None:
        self.builds: Counter[str] = Counter()
        """Entries built (not reused), by kind (``OUTBOUND_CLUSTER``...): for tests
        and benches."""
        b = self.builds
        self._backends = _Memo(BACKENDS, _build_backends, b)
        self._clusters = _Memo(OUTBOUND_CLUSTER, _build_outbound_cluster, b)
        self._endpoints = _Memo(ENDPOINTS, _build_endpoints, b)
        self._virtual_hosts = _Memo(VIRTUAL_HOSTS, _build_virtual_hosts, b)
        self._route_configs = _Memo(OUTBOUND_ROUTES, self._build_route_config, b)
        self._outbound_listeners = _Memo(OUTBOUND_LISTENER, _build_outbound_listener, b)
        self._upstream_listeners = _Memo(UPSTREAM_LISTENER, _build_upstream_listener, b)
        self._inbound_clusters = _Memo(INBOUND_CLUSTER, _build_inbound_cluster, b)
        self._inbound_listeners = _Memo(INBOUND_LISTENER, _build_inbound_listener, b)
        self._gateway_listeners = _Memo(GATEWAY_LISTENER, _build_gateway_listener, b)
        self._api_gateway_listeners = _Memo(API_GATEWAY_LISTENER, _build_api_gateway_listener, b)
        self._external_clusters = _Memo(EXTERNAL_CLUSTERS, _build_external_clusters, b)
        self._jwks_clusters = _Memo(JWKS_CLUSTER, _build_jwks_cluster, b)
        self._collector_clusters = _Memo(COLLECTOR, _build_collector_cluster, b)
        self._on_demand_vhosts = _Memo(ON_DEMAND_VHOSTS, _build_on_demand_vhosts, b)
        self._on_demand_routes = _Memo(ON_DEMAND_ROUTES, _build_on_demand_routes, b)
        self._host_answers: _Memo[_DeniedHostKey | _OutsideHostKey, Resource] = _Memo(
            HOST_ANSWER, _build_host_answer, b
        )
        self._memos: tuple[_Memo[Any, Any], ...] = (
            self._backends,
            self._clusters,
            self._endpoints,
            self._virtual_hosts,
            self._route_configs,
            self._outbound_listeners,
            self._upstream_listeners,
            self._inbound_clusters,
            self._inbound_listeners,
            self._gateway_listeners,
            self._api_gateway_listeners,
            self._external_clusters,
            self._jwks_clusters,
            self._collector_clusters,
            self._on_demand_vhosts,
            self._on_demand_routes,
            self._host_answers,
        )
        self._shared: _Shared | None = None
        self._settings_memo: _SettingsMemo = {}
        self._steps: dict[ServiceKey, _ServiceStep] = {}
        self._route_views: dict[str, _RouteView] = {}
        self._changed: frozenset[ServiceKey] | None = None

    @property
    def services_translated(self) -> int:
        """How many times a service's outbound clusters or virtual hosts were built
        rather than reused (endpoints apart: an endpoint change rebuilds only those)."""
        return self.builds[OUTBOUND_CLUSTER] + self.builds[VIRTUAL_HOSTS]

    def changed_services(self, state: MeshState) -> frozenset[ServiceKey] | None:
        """The services whose resources differ between ``state`` and the state
        translated before it; None if something every proxy may depend on changed too
        (mesh settings, a policy, a service added or removed). A proxy on demand that
        holds none of them, and whose own service is not among them, is unchanged."""
        self._shared_for(state)
        return self._changed

    def entries(self) -> Counter[str]:
        """Entries kept now, by kind: what the memo costs in memory."""
        return Counter({memo.kind: len(memo) for memo in self._memos})

    def for_proxy(
        self, state: MeshState, proxy: ProxyId, requested: frozenset[str] | None = None
    ) -> ProxyResources:
        """The resources for ``proxy``. Raises TranslationError if the state has no
        such workload. ``requested``: a sidecar that learns services on demand (delta
        xDS), with the Hosts it has asked for (``outbound-http/<host>``); None sends
        it the whole mesh."""
        shared = self._shared_for(state)
        workload = state.workload(proxy.workload, proxy.namespace)
        if workload is None:
            gateway = state.gateway(proxy.workload, proxy.namespace)
            if gateway is None:
                raise TranslationError(
                    f"proxy {proxy}: workload {proxy.workload!r} in namespace "
                    f"{proxy.namespace!r} is not in the mesh"
                )
            return self._for_gateway(shared, gateway)
        if requested is not None:
            return self._on_demand(shared, state, workload, requested)
        clusters, listeners = self._sidecar_resources(
            state, workload, captured=_dialled(shared.captured_tcp, shared.captured_tcp, workload)
        )
        return ProxyResources(
            {
                ResourceType.CLUSTER: MappingProxyType(clusters),
                ResourceType.LISTENER: MappingProxyType(listeners),
            },
            self._shared_view(shared, proxy.namespace, locality_of(workload)),
        )

    def forget(self, proxy: ProxyId) -> None:
        """Nothing to drop: no entry belongs to one proxy (proxies built from the same
        inputs share entries), and what a departed proxy alone used ages out of the
        memo with the states (see ``_Memo``)."""

    def _shared_for(self, state: MeshState) -> _Shared:
        shared = self._shared
        if shared is not None and shared.state is state:
            return shared
        for memo in self._memos:
            memo.next_generation()
        clusters: dict[str, Resource] = {}
        endpoints: dict[str, Resource] = {}
        trust_domain = state.mesh.trust_domain
        seen: _SettingsMemo = {}
        backend_settings, rate_limits = _backend_policies(state.policies, self._settings_memo, seen)
        self._settings_memo = seen
        routes = _routes_by_service(state.policies)
        steps: dict[ServiceKey, _ServiceStep] = {}
        owners: dict[str, ServiceKey] = {}
        for key, service in state.services.items():
            # Only ready workloads are endpoints; one starting up is not called yet.
            members = state.workloads_of(key)
            if not all(w.ready for w in members):
                # (Filtered only when needed: the state's own tuple, kept the very same
                # while its workloads are, is what lets the next state reuse this step.)
                members = tuple(w for w in members if w.ready)
            mtls = state.mtls_mode(service)
            settings = backend_settings.get(key)
            attached = tuple(routes.get(key, ()))
            faults = _faults_named(attached, state.policies.fault_injections)
            step = self._steps.get(key)
            if step is not None and step.reusable(
                service, members, trust_domain, mtls, settings, attached, faults
            ):
                for memo, entry in step.kept:
                    memo.keep(entry)
            else:
                fresh = self._service_step(
                    key, service, members, trust_domain, mtls, settings, attached, faults
                )
                if step is not None and fresh.routes == step.routes:
                    # What its virtual hosts are built from is unchanged (its
                    # endpoints moved): keep the very object, so the route
                    # configurations that hold it are kept by identity too.
                    fresh.routes = step.routes
                step = fresh
            steps[key] = step
            for resource in step.clusters:
                _add(clusters, resource)
                owners[resource.name] = key
            for resource in step.endpoints:
                _add(endpoints, resource)
        self._changed = _changed_services(self._shared, state, self._steps, steps)
        self._steps = steps
        egress = _EgressKey(
            state.mesh.outbound_traffic_policy.mode,
            tuple(e.spec for e in state.policies.external_services),
        )
        leaving: list[ExternalServiceSpec | None] = list(egress.externals)
        if egress.mode is OutboundTrafficMode.ALLOW_ANY:
            leaving.append(None)  # the passthrough cluster
        outside: dict[str, Resource] = {}
        for spec in leaving:
            for cluster in self._external_clusters(spec):
                _add(outside, cluster)
        if state.mesh.tracing.collector is not None:
            _add(outside, self._collector_clusters(state.mesh.tracing.collector))
        clusters.update(outside)
        services = tuple(steps[key].routes for key in sorted(steps))
        shared = _Shared(
            state,
            MappingProxyType(clusters),
            MappingProxyType(endpoints),
            services,
            egress,
            faults=bool(state.policies.fault_injections),
            rate_limits=rate_limits,
            authorization=_by_target(state, state.policies.authorization_policies),
            authentication=_by_target(state, state.policies.request_authentications),
            telemetry=settings_by_service(state.policies.telemetry, state.services),
            owners=owners,
            outside_clusters=MappingProxyType(outside),
            captured_tcp=_captured_tcp(state),
        )
        self._shared = shared
        return shared

    def _service_step(
        self,
        key: ServiceKey,
        service: Service,
        members: tuple[Workload, ...],
        trust_domain: str,
        mtls: MtlsMode,
        settings: BackendSettings | None,
        attached: tuple[HTTPRoute | GRPCRoute, ...],
        faults: tuple[FaultInjection, ...],
    ) -> _ServiceStep:
        kept: _Kept = []

        def look_up(memo: _Memo[K, V], entry_key: K) -> V:
            entry = memo.entry(entry_key)
            kept.append((memo, entry))
            return entry.value

        backends = look_up(self._backends, _BackendsKey(trust_domain, _Same(members)))
        clusters, endpoints = [], []
        for port in service.ports:
            cluster_key = _ClusterKey(key, port, mtls, backends.identities, settings)
            clusters.append(look_up(self._clusters, cluster_key))
            served = backends.endpoints.get(port.port_name, ())
            endpoints.append(look_up(self._endpoints, _EndpointsKey(key, port.port, served)))
        load_balancer = settings.load_balancer if settings is not None else None
        service_routes = _ServiceRoutes(
            key,
            service.ports,
            _Same(attached),
            _Same(faults),
            load_balancer.hash_on if load_balancer is not None else None,
            any(r.metadata.namespace != key.namespace for r in attached),
        )
        return _ServiceStep(
            service,
            members,
            trust_domain,
            mtls,
            settings,
            attached,
            faults,
            clusters,
            endpoints,
            service_routes,
            kept,
        )

    def _shared_view(
        self, shared: _Shared, namespace: str | None, locality: Locality = NO_LOCALITY
    ) -> Mapping[ResourceType, ResourceMap]:
        """What every proxy of ``namespace`` in ``locality`` shares (``None``: gateways,
        no routes); the same object for all of them for one state."""
        view = shared.views.get((namespace, locality))
        if view is None:
            parts: dict[ResourceType, ResourceMap] = {
                ResourceType.CLUSTER: shared.clusters,
                ResourceType.ENDPOINT: _local_endpoints(shared, locality),
            }
            if namespace is not None:
                route = self._route_view(shared, namespace)
                parts[ResourceType.ROUTE] = MappingProxyType({route.name: route})
            view = MappingProxyType(parts)
            shared.views[(namespace, locality)] = view
        return view

    def _route_view(self, shared: _Shared, namespace: str) -> Resource:
        """The outbound route configuration of ``namespace``'s proxies: the last state's
        if every service's routes are the very same (an endpoint change), else looked
        up by its key."""
        last = self._route_views.get(namespace)
        if (
            last is not None
            and last.egress == shared.egress
            and _same_items(last.services, shared.services)
        ):
            for memo, entry in last.kept:
                memo.keep(entry)
            return last.route
        key = _RouteConfigKey(
            tuple(
                _VirtualHostsKey(
                    s,
                    short=s.service.namespace == namespace,
                    caller_namespace=namespace if s.consumer else None,
                )
                for s in shared.services
            ),
            shared.egress,
        )
        # Looked up even when the route configuration is kept: an entry no state uses
        # is let go (see _Memo), and the next change to one service should rebuild that
        # service's virtual hosts, not every service's.
        kept: _Kept = [
            (self._virtual_hosts, self._virtual_hosts.entry(k)) for k in key.virtual_hosts
        ]
        entry = self._route_configs.entry(key)
        kept.append((self._route_configs, entry))
        self._route_views[namespace] = _RouteView(shared.services, shared.egress, entry.value, kept)
        return entry.value

    def _build_route_config(self, key: _RouteConfigKey) -> Resource:
        hosts = [host for k in key.virtual_hosts for host in self._virtual_hosts(k)]
        hosts += egress_virtual_hosts(key.egress.mode, key.egress.externals)
        return _resource(ResourceType.ROUTE, outbound_route_config(hosts))

    def _sidecar_resources(
        self,
        state: MeshState,
        workload: Workload,
        *,
        on_demand: bool = False,
        captured: tuple[CapturedTcp, ...] = (),
    ) -> tuple[dict[str, Resource], dict[str, Resource]]:
        """A sidecar's own clusters and listeners: its outbound side, then its inbound
        side. ``captured``: the TCP destinations of the services it holds, which its
        outbound listener takes if its pod's connections are redirected to it."""
        key = ServiceKey(workload.service, workload.namespace or "")
        service = state.services[key]
        clusters: dict[str, Resource] = {}
        listeners: dict[str, Resource] = {}
        # How its listeners trace and log, one answer for all of them.
        telemetry = self._telemetry(state, key.name, key.namespace)
        assert workload.sidecar.outbound_port is not None, "resolved workloads have ports"
        _add(
            listeners,
            self._outbound_listeners(
                _OutboundListenerKey(
                    workload.sidecar.outbound_port,
                    telemetry,
                    self._faults(state),
                    state.mesh.outbound_traffic_policy.mode is OutboundTrafficMode.ALLOW_ANY,
                    on_demand,
                    captured if workload.sidecar.capture else None,
                )
            ),
        )
        for upstream in workload.upstreams:
            target = ServiceKey(upstream.service, key.namespace)
            target_port = next(p for p in state.services[target].ports if p.port == upstream.port)
            assert upstream.local_port is not None, "resolved upstreams have ports"
            upstream_key = _UpstreamListenerKey(upstream.local_port, target, target_port, telemetry)
            _add(listeners, self._upstream_listeners(upstream_key))
        ports = {p.port_name: p for p in service.ports}
        mtls = state.mtls_mode(service)
        authentication = self._authentication(state).get(key, _NO_AUTHENTICATION)
        for uri in jwks_uris(authentication.objects):
            _add(clusters, self._jwks_clusters(uri))
        for wp in workload.ports:
            port = ports[wp.name]
            _add(clusters, self._inbound_clusters(_InboundClusterKey(key, port, wp.app_port)))
            inbound_key = _InboundListenerKey(
                key,
                port,
                workload.address,
                wp.port,
                mtls,
                state.mesh.trust_domain,
                self._rate_limits(state).get(key),
                self._authorization(state).get(key, _NO_AUTHORIZATION),
                state.mesh.authorization.default,
                authentication,
                telemetry,
                workload.sidecar.capture,
            )
            _add(listeners, self._inbound_listeners(inbound_key))
        if workload.sidecar.capture:
            _add(listeners, _CAPTURE_LISTENER)
            _add(clusters, _BLACKHOLE_CLUSTER)
        return clusters, listeners

    def _on_demand(
        self,
        shared: _Shared,
        state: MeshState,
        workload: Workload,
        requested: frozenset[str],
    ) -> ProxyResources:
        """A sidecar that holds only what its workload uses (``outbound.demand``): its
        own side, the services it declares, those policies name it a caller of, those
        it asked for, and the backends their routes send to; each requested Host
        answered (a service's virtual host, a refusal, or the way out of the mesh)."""
        namespace = workload.namespace or ""
        caller = _caller(state, workload)
        authorization = shared.authorization
        default = state.mesh.authorization.default

        def allowed(key: ServiceKey) -> bool:
            policies = authorization.get(key, _NO_AUTHORIZATION).objects
            mtls = state.mtls_mode(state.services[key]) is not MtlsMode.DISABLE
            return may_call(caller, policies, default, mtls=mtls)

        # What its upstream listeners lead to is held whatever the policies say (the
        # listener needs its cluster; the callee's RBAC decides each request).
        upstreams = {ServiceKey(u.service, namespace) for u in workload.upstreams}
        held: dict[ServiceKey, Reason] = dict.fromkeys(upstreams, Reason.DECLARED)
        for key in workload.called(namespace):
            if key in state.services:
                held.setdefault(key, Reason.DECLARED)
        for key, policies in authorization.items():
            if any(names_caller(caller, p) for p in policies.objects):
                held.setdefault(key, Reason.POLICY)
        answers: dict[str, tuple[str, ServiceKey | None]] = {}
        for name in sorted(requested):
            host = host_of(name)
            if host is None:
                continue
            called = resolve_host(host, namespace, state.services)
            answers[name] = (host, called)
            if called is not None:
                held.setdefault(called, Reason.ON_DEMAND)
        if workload.sidecar.capture:
            # A TCP connection names no Host to ask for: a captured app may dial any
            # TCP service it may call, so its sidecar holds them all from the start.
            for key in shared.captured_tcp:
                held.setdefault(key, Reason.CAPTURED)
        held = {
            k: r for k, r in held.items() if k in self._steps and (k in upstreams or allowed(k))
        }
        clusters, listeners = self._sidecar_resources(
            state,
            workload,
            on_demand=True,
            captured=_dialled(shared.captured_tcp, held, workload),
        )

        vhosts: dict[str, Resource] = {_ANCHOR.name: _ANCHOR}
        for key in held:
            step = self._steps[key]
            vkey = _VirtualHostsKey(
                step.routes,
                short=key.namespace == namespace,
                caller_namespace=namespace if step.routes.consumer else None,
            )
            for resource in self._on_demand_vhosts(vkey):
                _add(vhosts, resource)
        # What the held services' routes send to comes along (a canary's version).
        for resource in list(vhosts.values()):
            assert isinstance(resource.message, route_components_pb2.VirtualHost)
            for sends_to in clusters_of(resource.message):
                owner = shared.owners.get(sends_to)
                if owner is not None and owner not in held:
                    held[owner] = Reason.BACKEND
        endpoints_seen = _local_endpoints(shared, locality_of(workload))
        endpoints: dict[str, Resource] = {}
        for key in held:
            step = self._steps[key]
            for cluster in step.clusters:
                _add(clusters, cluster)
                assignment = endpoints_seen.get(cluster.name)
                if assignment is not None:
                    _add(endpoints, assignment)
        clusters.update(shared.outside_clusters)

        route = self._on_demand_routes(shared.egress)
        assert isinstance(route.message, route_pb2.RouteConfiguration)
        outside_hosts = {d for v in route.message.virtual_hosts for d in v.domains}
        aliases: dict[str, str | None] = {}
        mode = state.mesh.outbound_traffic_policy.mode
        for name, (host, called) in answers.items():
            if called is None and host.lower() in outside_hosts:
                aliases[name] = None  # an ExternalService's: the route configuration has it
                continue
            if called is None:
                answer = self._host_answers(_OutsideHostKey(host.lower(), mode))
            elif called not in held:
                answer = self._host_answers(_DeniedHostKey(host.lower(), called))
            else:
                found = next(
                    (
                        r
                        for r in vhosts.values()
                        if isinstance(r.message, route_components_pb2.VirtualHost)
                        and serves_host(r.message, host)
                    ),
                    None,
                )
                aliases[name] = found.name if found is not None else None
                continue
            _add(vhosts, answer)
            aliases[name] = answer.name
        return ProxyResources(
            {
                ResourceType.CLUSTER: MappingProxyType(clusters),
                ResourceType.ENDPOINT: MappingProxyType(endpoints),
                ResourceType.LISTENER: MappingProxyType(listeners),
                ResourceType.ROUTE: MappingProxyType({route.name: route}),
                ResourceType.VIRTUAL_HOST: MappingProxyType(vhosts),
            },
            held=MappingProxyType(held),
            aliases=MappingProxyType(aliases),
        )

    def _rate_limits(self, state: MeshState) -> Mapping[ServiceKey, RateLimit]:
        return self._shared_for(state).rate_limits

    def _authorization(self, state: MeshState) -> Mapping[ServiceKey, _Same[AuthorizationPolicy]]:
        return self._shared_for(state).authorization

    def _authentication(
        self, state: MeshState
    ) -> Mapping[ServiceKey, _Same[RequestAuthentication]]:
        return self._shared_for(state).authentication

    def _faults(self, state: MeshState) -> bool:
        return self._shared_for(state).faults

    def _telemetry(self, state: MeshState, service: str, namespace: str) -> ProxyTelemetry:
        """How the proxies of ``service`` (or of a gateway of that name) trace and log:
        its own Telemetry, else its namespace's, else the mesh's defaults (sampling as
        ``mesh.tracing`` says, failed requests logged)."""
        settings = self._shared_for(state).telemetry.get(ServiceKey(service, namespace))
        if settings is None:
            settings = namespace_settings(state.policies.telemetry, namespace)
        mesh = state.mesh.tracing
        percentage = mesh.random_sampling_percentage
        if settings is not None and settings.tracing is not None:
            percentage = settings.tracing.random_sampling_percentage
        every_request = (
            settings is not None
            and settings.access_logging is not None
            and settings.access_logging.requests is LoggedRequests.ALL
        )
        return ProxyTelemetry(service, percentage, mesh.collector is not None, every_request)

    def _for_gateway(self, shared: _Shared, gateway: Gateway) -> ProxyResources:
        """A short-form gateway's listener, or a Gateway document's, one per port."""
        listeners: dict[str, Resource] = {}
        telemetry = self._telemetry(shared.state, gateway.name, gateway.namespace or "")
        if gateway.routes:
            key = _GatewayListenerKey(
                gateway.name,
                gateway.address,
                gateway.port,
                gateway_targets(gateway, shared.state.services),
                telemetry,
            )
            _add(listeners, self._gateway_listeners(key))
        policies = shared.state.policies
        document = policies.gateway(gateway.namespace or "", gateway.name)
        if document is not None:
            for api_key in _api_gateway_keys(document, gateway.address, policies, telemetry):
                _add(listeners, self._api_gateway_listeners(api_key))
        return ProxyResources(
            {ResourceType.LISTENER: MappingProxyType(listeners)},
            self._shared_view(shared, None),
        )


# --- builders: each reads its key and nothing else ------------------------------------


def _build_backends(key: _BackendsKey) -> _Backends:
    workloads = key.workloads.objects
    # As MeshState.identities_of has them; the state is not this builder's to read.
    identities = {
        SpiffeId(key.trust_domain, w.namespace or "", w.service_account or "").uri
        for w in workloads
    }
    return _Backends(tuple(sorted(identities)), endpoints_by_port(workloads))


def _build_outbound_cluster(key: _ClusterKey) -> Resource:
    cluster = outbound_cluster(key.service, key.port, key.mtls, key.identities, key.backend)
    return _resource(ResourceType.CLUSTER, cluster)


def _build_endpoints(key: _EndpointsKey) -> Resource:
    assignment = load_assignment(key.service, key.port, key.endpoints)
    return Resource.of(ResourceType.ENDPOINT, assignment.cluster_name, assignment)


def _build_virtual_hosts(key: _VirtualHostsKey) -> tuple[route_components_pb2.VirtualHost, ...]:
    service = key.service
    return tuple(
        virtual_hosts(
            service.service,
            service.ports,
            short=key.short,
            caller_namespace=key.caller_namespace,
            routes=service.routes.objects,
            policies=Policies(fault_injections=service.faults.objects),
            hash_on=service.hash_on,
        )
    )


def _build_on_demand_vhosts(key: _VirtualHostsKey) -> tuple[Resource, ...]:
    out = []
    for vhost in _build_virtual_hosts(key):
        named = route_components_pb2.VirtualHost()
        named.CopyFrom(vhost)
        # In the route configuration's VHDS namespace, and named the same inside: Envoy
        # removes a virtual host by that inner name.
        named.name = alias(vhost.name)
        out.append(Resource.of(ResourceType.VIRTUAL_HOST, named.name, named))
    return tuple(out)


def _build_on_demand_routes(key: _EgressKey) -> Resource:
    hosts = [vhost for spec in key.externals for vhost in external_virtual_hosts(spec)]
    return _resource(ResourceType.ROUTE, outbound_route_config(hosts, on_demand=True))


def _build_host_answer(key: _DeniedHostKey | _OutsideHostKey) -> Resource:
    if isinstance(key, _DeniedHostKey):
        vhost = denied_virtual_host(key.host, key.service)
    else:
        vhost = for_one_host(catch_all_virtual_host(key.mode), key.host)
    return _resource(ResourceType.VIRTUAL_HOST, vhost)


def _changed_services(
    before: _Shared | None,
    state: MeshState,
    old_steps: Mapping[ServiceKey, _ServiceStep],
    new_steps: Mapping[ServiceKey, _ServiceStep],
) -> frozenset[ServiceKey] | None:
    if before is None or old_steps.keys() != new_steps.keys():
        return None
    old = before.state
    same_policies = len(old.policies) == len(state.policies) and all(
        a is b for a, b in zip(old.policies, state.policies, strict=True)
    )
    if old.mesh is not state.mesh or not same_policies:
        return None
    return frozenset(k for k, step in new_steps.items() if old_steps[k] is not step)


def _caller(state: MeshState, workload: Workload) -> Caller:
    principal = state.spiffe_id(workload)
    account = workload.service_account or workload.service
    return Caller(principal, workload.namespace or "", account)


def _captured_tcp(state: MeshState) -> Mapping[ServiceKey, tuple[CapturedTcp, ...]]:
    """Where a captured app may dial each TCP service port: its virtual addresses on
    the service port, and each of its workloads on that workload's port."""
    out: dict[ServiceKey, tuple[CapturedTcp, ...]] = {}
    for key in sorted(state.services):
        service = state.services[key]
        tcp = [p for p in service.ports if not p.protocol.is_http]
        if not tcp:
            continue
        by_port = endpoints_by_port(state.workloads_of(key))
        found: list[CapturedTcp] = []
        for port in tcp:
            cluster = names.outbound_cluster(key, port.port)
            found += (CapturedTcp(a, port.port, cluster) for a in service.addresses)
            found += (
                CapturedTcp(e.address, e.port, cluster) for e in by_port.get(port.port_name, ())
            )
        out[key] = tuple(found)
    return MappingProxyType(out)


def _dialled(
    captured: Mapping[ServiceKey, tuple[CapturedTcp, ...]],
    held: Iterable[ServiceKey],
    workload: Workload,
) -> tuple[CapturedTcp, ...]:
    """The TCP destinations of the ``held`` services, one per address and port (Envoy
    refuses two filter chains that match alike): the first service by name keeps a
    workload that serves two on one port. Nothing for a sidecar not captured: its app
    dials its sidecar, not the services (every proxy's translation passes here)."""
    if not workload.sidecar.capture:
        return ()
    out: dict[tuple[str, int], CapturedTcp] = {}
    for key in sorted(k for k in held if k in captured):
        for destination in captured[key]:
            out.setdefault((destination.address, destination.port), destination)
    return tuple(out.values())


def _build_outbound_listener(key: _OutboundListenerKey) -> Resource:
    # An empty fault config does nothing by itself: the routes that name a
    # FaultInjection carry its delay or abort (typed_per_filter_config).
    filters = HttpFilters(
        fault=fault_pb2.HTTPFault() if key.faults else None,
        dynamic_forward_proxy=forward_proxy_filter() if key.forward_proxy else None,
        on_demand=on_demand_pb2.OnDemand() if key.on_demand else None,
    )
    return _resource(
        ResourceType.LISTENER, outbound_listener(key.port, filters, key.telemetry, key.captured)
    )


def _build_upstream_listener(key: _UpstreamListenerKey) -> Resource:
    listener = upstream_listener(
        names.upstream_listener(key.local_port, key.service),
        key.local_port,
        names.outbound_cluster(key.service, key.port.port),
        http=key.port.protocol.is_http,
        streaming=key.port.protocol.needs_http2,
        filters=ROUTER_ONLY,
        telemetry=key.telemetry,
    )
    return _resource(ResourceType.LISTENER, listener)


def _build_inbound_cluster(key: _InboundClusterKey) -> Resource:
    return _resource(ResourceType.CLUSTER, inbound_cluster(key.service, key.port, key.app_port))


def _build_inbound_listener(key: _InboundListenerKey) -> Resource:
    listener = inbound_listener(
        names.inbound_listener(key.service, key.port.port),
        key.address,
        key.endpoint_port,
        names.inbound_cluster(key.service, key.port.port),
        http=key.port.protocol.is_http,
        mtls=key.mtls,
        trust_domain=key.trust_domain,
        # The callee's filters: who may call it, then how often.
        filters=HttpFilters(
            jwt_authn=(
                jwt_authentication(key.authentication.objects)
                if key.port.protocol.is_http
                else None
            ),
            rbac=(
                rbac_filters(
                    key.authorization.objects,
                    key.default_authorization,
                    service_port=key.port.port,
                    trust_domain=key.trust_domain,
                )
                if key.port.protocol.is_http
                else ()
            ),
            local_ratelimit=(
                local_rate_limit(key.service, key.rate_limit)
                if key.rate_limit is not None and key.port.protocol.is_http
                else None
            ),
        ),
        route_limits=(
            route_rate_limits(key.service, key.rate_limit) if key.rate_limit is not None else ()
        ),
        telemetry=key.telemetry,
        bind_to_port=not key.capture,
    )
    return _resource(ResourceType.LISTENER, listener)


def _build_collector_cluster(address: str) -> Resource:
    return _resource(ResourceType.CLUSTER, collector_cluster(address))


def _build_jwks_cluster(uri: str) -> Resource:
    return _resource(ResourceType.CLUSTER, jwks_cluster(uri))


def _build_external_clusters(spec: ExternalServiceSpec | None) -> tuple[Resource, ...]:
    """An ExternalService's clusters; for None, the passthrough cluster of ALLOW_ANY."""
    found = external_clusters(spec) if spec is not None else [passthrough_cluster()]
    return tuple(_resource(ResourceType.CLUSTER, c) for c in found)


def _build_api_gateway_listener(key: _ApiGatewayListenerKey) -> Resource:
    attached = [
        AttachedListener(listener, routes.objects)
        for listener, routes in zip(key.listeners.objects, key.routes, strict=True)
    ]
    faults = key.faults.objects
    listener = api_gateway_listener(
        key.name,
        key.address,
        key.port,
        attached,
        Policies(fault_injections=faults),
        # As a caller's chain: the routes carry each fault's delay or abort.
        HttpFilters(fault=fault_pb2.HTTPFault()) if faults else ROUTER_ONLY,
        key.telemetry,
    )
    return _resource(ResourceType.LISTENER, listener)


def _api_gateway_keys(
    document: APIGateway, address: str, policies: Policies, telemetry: ProxyTelemetry
) -> list[_ApiGatewayListenerKey]:
    """Per port of the Gateway, its listeners there and the routes attached to each:
    a route whose parentRef names the Gateway, and that listener by ``sectionName``
    and ``port`` if it names them."""
    name, namespace = document.metadata.name, document.metadata.namespace or ""
    by_port: dict[int, list[Listener]] = {}
    for listener in document.spec.listeners:
        by_port.setdefault(listener.port, []).append(listener)
    keys = []
    for port, listeners in sorted(by_port.items()):
        routes = tuple(
            _Same(
                tuple(
                    route
                    for route in policies.http_routes
                    if any(
                        p.is_gateway
                        and p.name == name
                        and (p.namespace or route.metadata.namespace) == namespace
                        and p.section_name in (None, listener.name)
                        and p.port in (None, port)
                        for p in route.spec.parent_refs
                    )
                    and (route.metadata.namespace == namespace or listener.allows_any_namespace)
                )
            )
            for listener in listeners
        )
        named = {
            item.extension_ref.name
            for attached in routes
            for route in attached.objects
            for rule in route.spec.rules
            for item in rule.filters
            if item.extension_ref is not None
        }
        faults = tuple(f for f in policies.fault_injections if f.metadata.name in named)
        keys.append(
            _ApiGatewayListenerKey(
                name, address, port, _Same(tuple(listeners)), routes, _Same(faults), telemetry
            )
        )
    return keys


def _build_gateway_listener(key: _GatewayListenerKey) -> Resource:
    listener = gateway_listener(
        key.name, key.address, key.port, key.targets, ROUTER_ONLY, key.telemetry
    )
    return _resource(ResourceType.LISTENER, listener)


_SettingsMemo = dict[int, tuple[BackendPolicy, BackendSettings]]


def _backend_policies(
    policies: Policies, known: _SettingsMemo, seen: _SettingsMemo
) -> tuple[dict[ServiceKey, BackendSettings], dict[ServiceKey, RateLimit]]:
    """Each targeted service's BackendPolicy settings (its callers') and rate limit (its
    own sidecars'); of two policies on one service, the first by name wins (loading
    warns of the other). ``known``: the settings of the previous state's policies, by
    policy identity (``reuse_unchanged`` keeps an unchanged policy the same object), so
    a push re-extracts only edited policies; ``seen`` gets this state's."""
    settings: dict[ServiceKey, BackendSettings] = {}
    limits: dict[ServiceKey, RateLimit] = {}
    for policy in sorted(policies.backend_policies, key=lambda p: p.metadata.name):
        spec = policy.spec
        cached = known.get(id(policy))
        if cached is not None and cached[0] is policy:
            these = cached[1]
        else:
            these = BackendSettings.model_validate(
                {f: getattr(spec, f) for f in BackendSettings.model_fields}
            )
        seen[id(policy)] = (policy, these)
        for target in spec.target_refs:
            key = ServiceKey(target.name, policy.metadata.namespace or "")
            if key not in settings:
                settings[key] = these
                if spec.rate_limit is not None:
                    limits[key] = spec.rate_limit
    return settings, limits


def _routes_by_service(policies: Policies) -> dict[ServiceKey, list[HTTPRoute | GRPCRoute]]:
    out: dict[ServiceKey, list[HTTPRoute | GRPCRoute]] = {}
    every: list[HTTPRoute | GRPCRoute] = [*policies.http_routes, *policies.grpc_routes]
    for route in every:
        namespace = route.metadata.namespace or ""
        for parent in route.spec.parent_refs:
            if parent.is_service:
                key = ServiceKey(parent.name, parent.namespace or namespace)
                found = out.setdefault(key, [])
                # By identity: a route naming a service twice (two ports) counts once.
                if all(r is not route for r in found):
                    found.append(route)
    return out


_NO_AUTHORIZATION: _Same[AuthorizationPolicy] = _Same(())
_NO_AUTHENTICATION: _Same[RequestAuthentication] = _Same(())
_Targeting = TypeVar("_Targeting", AuthorizationPolicy, RequestAuthentication)


def _by_target(
    state: MeshState, policies: Sequence[_Targeting]
) -> dict[ServiceKey, _Same[_Targeting]]:
    """The policies of each service: those of its namespace that name it in
    ``targetRefs`` or name no target (namespace-wide), by name."""
    found: dict[ServiceKey, list[_Targeting]] = {}
    ordered = sorted(policies, key=lambda p: (p.metadata.namespace or "", p.metadata.name))
    for policy in ordered:
        for key in services_targeted(policy.metadata, policy.spec.target_refs, state.services):
            found.setdefault(key, []).append(policy)
    return {key: _Same(tuple(policies)) for key, policies in found.items()}


def _faults_named(
    routes: Sequence[HTTPRoute | GRPCRoute], faults: Sequence[FaultInjection]
) -> tuple[FaultInjection, ...]:
    """The FaultInjections ``routes`` name in ExtensionRef filters."""
    if not routes:
        return ()
    named = {
        item.extension_ref.name
        for route in routes
        for rule in route.spec.rules
        for item in rule.filters
        if item.extension_ref is not None
    }
    return tuple(f for f in faults if f.metadata.name in named)


def _resource(rtype: ResourceType, message: Any) -> Resource:
    """A named Envoy message (a cluster, listener or route configuration) as a resource."""
    return Resource.of(rtype, message.name, message)


def _add(resources: dict[str, Resource], found: Resource) -> None:
    resources[found.name] = found


_ANCHOR = _resource(ResourceType.VIRTUAL_HOST, anchor_virtual_host())
# The same for every captured sidecar: built once.
_CAPTURE_LISTENER = _resource(ResourceType.LISTENER, inbound_capture_listener(INBOUND_CAPTURE_PORT))
_BLACKHOLE_CLUSTER = _resource(ResourceType.CLUSTER, blackhole_cluster())


def _local_endpoints(shared: _Shared, locality: Locality) -> ResourceMap:
    """``shared.endpoints`` for callers in ``locality``: an assignment spread over
    several localities is ranked by theirs; the rest are the very same resources."""
    if locality == NO_LOCALITY:
        return shared.endpoints
    found = shared.local_endpoints.get(locality)
    if found is None:
        ranked = {}
        for name, resource in shared.endpoints.items():
            assignment = resource.message
            assert isinstance(assignment, endpoint_pb2.ClusterLoadAssignment)
            if len(assignment.endpoints) > 1:
                resource = Resource.of(
                    ResourceType.ENDPOINT, name, for_caller(assignment, locality)
                )
            ranked[name] = resource
        found = shared.local_endpoints[locality] = MappingProxyType(ranked)
    return found
