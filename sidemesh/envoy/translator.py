"""``Translator``: MeshState + proxy → ``ProxyResources``, reusing earlier work.

The builders are pure. What this adds is memory: resources shared by every proxy
(outbound clusters, endpoints, route configurations) are built once per service and
kept while that service and its workloads are the very same objects (``MeshState``
keeps unchanged objects across versions), so one endpoint change re-translates one
service's endpoints and nothing else.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from sidemesh.envoy import clusters, endpoints, listeners, names, routes
from sidemesh.envoy.proxy import ProxyId
from sidemesh.envoy.resources import ADS_ORDER, Resource, ResourceType
from sidemesh.errors import TranslationError
from sidemesh.model import Gateway, MeshConfig, MeshState, MtlsMode, Service, ServiceKey, Workload

ResourceMap = Mapping[str, Resource]


_EMPTY: ResourceMap = MappingProxyType({})


@dataclass(frozen=True)
class ProxyResources:
    """Everything one proxy is sent, by type and name: its own resources (``local``)
    over those it shares with every proxy of its namespace (``shared``, the very same
    mapping object for all of them, so what holds for it is checked once)."""

    local: Mapping[ResourceType, ResourceMap]
    shared: Mapping[ResourceType, ResourceMap] = field(default_factory=dict)
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
        return ProxyResources({t: MappingProxyType(m) for t, m in local.items()}, self.shared)


@dataclass
class _ServiceEntry:
    """Translation of one service, valid while ``service`` and ``workloads`` are the
    same objects."""

    service: Service
    workloads: tuple[Workload, ...]
    identities: tuple[str, ...]
    mtls: MtlsMode
    clusters: tuple[Resource, ...]
    endpoints: tuple[Resource, ...]
    vhosts_short: tuple[object, ...] = ()
    vhosts_long: tuple[object, ...] = ()


@dataclass
class _Shared:
    """Resources that are the same for every proxy of one mesh state."""

    clusters: dict[str, Resource] = field(default_factory=dict)
    endpoints: dict[str, Resource] = field(default_factory=dict)
    routes_by_namespace: dict[str, Resource] = field(default_factory=dict)
    views: dict[str | None, Mapping[ResourceType, ResourceMap]] = field(default_factory=dict)


class Translator:
    """Translates mesh states for many proxies. Not thread-safe; one per control plane."""

    def __init__(self) -> None:
        self._services: dict[ServiceKey, _ServiceEntry] = {}
        self._state: MeshState | None = None
        self._shared = _Shared()
        self._locals: dict[tuple[str, str], tuple[Workload, Service, _Local]] = {}
        self.services_translated = 0
        """How many service translations were done (not reused): for tests and benches."""

    def for_proxy(self, state: MeshState, proxy: ProxyId) -> ProxyResources:
        """The resources for ``proxy``. Raises TranslationError if the state has no
        such workload."""
        workload = state.workload(proxy.workload, proxy.namespace)
        if workload is None:
            gateway = state.gateway(proxy.workload, proxy.namespace)
            if gateway is None:
                raise TranslationError(
                    f"proxy {proxy}: workload {proxy.workload!r} in namespace "
                    f"{proxy.namespace!r} is not in the mesh"
                )
            return self._for_gateway(state, gateway)
        local = self._local_resources(state, workload)
        return ProxyResources(
            {
                ResourceType.CLUSTER: MappingProxyType(local.clusters),
                ResourceType.LISTENER: MappingProxyType(local.listeners),
            },
            self._shared_view(state, proxy.namespace),
        )

    def _shared_view(
        self, state: MeshState, namespace: str | None
    ) -> Mapping[ResourceType, ResourceMap]:
        """What every proxy of ``namespace`` shares (``None``: gateways, no routes); the
        same object for all of them until the shared resources change."""
        shared = self._shared_for(state)
        view = shared.views.get(namespace)
        if view is None:
            parts: dict[ResourceType, ResourceMap] = {
                ResourceType.CLUSTER: MappingProxyType(shared.clusters),
                ResourceType.ENDPOINT: MappingProxyType(shared.endpoints),
            }
            if namespace is not None:
                route = self._outbound_routes(state, namespace)
                parts[ResourceType.ROUTE] = MappingProxyType({route.name: route})
            view = MappingProxyType(parts)
            shared.views[namespace] = view
        return view

    def _for_gateway(self, state: MeshState, gateway: Gateway) -> ProxyResources:
        namespace = gateway.namespace or ""
        routes = []
        for route in gateway.routes:
            key = ServiceKey(route.service, namespace)
            service = state.services[key]
            port = next(
                p
                for p in service.ports
                if (p.port == route.port if route.port else p.protocol.is_http)
            )
            routes.append(
                (route.prefix, names.outbound_cluster(key, port.port), port.protocol.needs_http2)
            )
        name = names.gateway_listener(gateway.port, gateway.name)
        listener = listeners.gateway_listener(name, gateway.address, gateway.port, routes)
        return ProxyResources(
            {
                ResourceType.LISTENER: MappingProxyType(
                    {name: Resource.of(ResourceType.LISTENER, name, listener)}
                )
            },
            self._shared_view(state, None),
        )

    def _shared_for(self, state: MeshState) -> _Shared:
        if state is self._state:
            return self._shared
        if self._state is not None and self._state.mesh != state.mesh:
            self._services = {}  # trust domain or default mode changed: everything did
        live: dict[ServiceKey, _ServiceEntry] = {}
        services_changed = set(state.services) != set(self._services)
        for key, service in state.services.items():
            workloads = state.workloads_of(key)
            entry = self._services.get(key)
            if (
                entry is None
                or entry.service is not service
                or entry.mtls is not state.mtls_mode(service)
            ):
                entry = self._translate_service(state, key, service, workloads)
                services_changed = True
            elif not _same_objects(entry.workloads, workloads):
                # Endpoints depend on workloads; clusters only on the identities they
                # serve with (whom a caller accepts); routes not at all.
                entry.workloads = workloads
                entry.endpoints = _endpoint_resources(key, service, workloads)
                identities = state.identities_of(key)
                if identities != entry.identities:
                    entry.identities = identities
                    entry.clusters = _cluster_resources(key, service, entry.mtls, identities)
            live[key] = entry
        shared = _Shared()
        for entry in live.values():
            for res in entry.clusters:
                shared.clusters[res.name] = res
            for res in entry.endpoints:
                shared.endpoints[res.name] = res
        if not services_changed:
            shared.routes_by_namespace = self._shared.routes_by_namespace
        self._services = live
        self._state = state
        self._shared = shared
        return shared

    def _translate_service(
        self,
        state: MeshState,
        key: ServiceKey,
        service: Service,
        workloads: tuple[Workload, ...],
    ) -> _ServiceEntry:
        self.services_translated += 1
        identities = state.identities_of(key)
        mtls = state.mtls_mode(service)
        return _ServiceEntry(
            service=service,
            workloads=workloads,
            identities=identities,
            mtls=mtls,
            clusters=_cluster_resources(key, service, mtls, identities),
            endpoints=_endpoint_resources(key, service, workloads),
            vhosts_short=tuple(routes.virtual_hosts(key, service, short=True)),
            vhosts_long=tuple(routes.virtual_hosts(key, service, short=False)),
        )

    def _outbound_routes(self, state: MeshState, namespace: str) -> Resource:
        cached = self._shared.routes_by_namespace.get(namespace)
        if cached is not None:
            return cached
        hosts: list[object] = []
        for key, entry in sorted(self._services.items()):
            hosts.extend(entry.vhosts_short if key.namespace == namespace else entry.vhosts_long)
        config = routes.outbound_route_config(hosts)
        resource = Resource.of(ResourceType.ROUTE, config.name, config)
        self._shared.routes_by_namespace[namespace] = resource
        return resource

    def _local_resources(self, state: MeshState, workload: Workload) -> _Local:
        key = ServiceKey(workload.service, workload.namespace or "")
        service = state.services[key]
        cache_key = (workload.name, key.namespace)
        cached = self._locals.get(cache_key)
        if (
            cached is not None
            and cached[0] is workload
            and cached[1] is service
            and cached[2].mesh == state.mesh
            and _same_objects(cached[2].upstream_targets, _upstream_targets(state, workload))
        ):
            return cached[2]
        local = self._build_local(state, key, service, workload)
        self._locals[cache_key] = (workload, service, local)
        return local

    def forget(self, proxy: ProxyId) -> None:
        """Drop what was kept for a proxy that went away."""
        self._locals.pop((proxy.workload, proxy.namespace), None)

    def _build_local(
        self, state: MeshState, key: ServiceKey, service: Service, workload: Workload
    ) -> _Local:
        ports = {p.port_name: p for p in service.ports}
        local = _Local(mesh=state.mesh, upstream_targets=_upstream_targets(state, workload))
        assert workload.sidecar.outbound_port is not None, "resolved workloads have ports"
        outbound = listeners.outbound_listener(workload.sidecar.outbound_port)
        local.listeners[outbound.name] = Resource.of(ResourceType.LISTENER, outbound.name, outbound)
        for upstream in workload.upstreams:
            target_key = ServiceKey(upstream.service, key.namespace)
            target = state.services[target_key]
            target_port = next(p for p in target.ports if p.port == upstream.port)
            assert upstream.local_port is not None, "resolved upstreams have ports"
            name = names.upstream_listener(upstream.local_port, target_key)
            listener = listeners.upstream_listener(
                name,
                upstream.local_port,
                names.outbound_cluster(target_key, target_port.port),
                http=target_port.protocol.is_http,
                streaming=target_port.protocol.needs_http2,
            )
            local.listeners[name] = Resource.of(ResourceType.LISTENER, name, listener)
        for wp in workload.ports:
            port = ports[wp.name]
            cluster = clusters.inbound_cluster(key, port, wp.app_port)
            local.clusters[cluster.name] = Resource.of(ResourceType.CLUSTER, cluster.name, cluster)
            name = names.inbound_listener(key, port.port)
            listener = listeners.inbound_listener(
                name,
                workload.address,
                wp.port,
                cluster.name,
                http=port.protocol.is_http,
                mtls=state.mtls_mode(service),
                trust_domain=state.mesh.trust_domain,
            )
            local.listeners[name] = Resource.of(ResourceType.LISTENER, name, listener)
        return local


@dataclass
class _Local:
    mesh: MeshConfig
    upstream_targets: tuple[Service, ...]
    clusters: dict[str, Resource] = field(default_factory=dict)
    listeners: dict[str, Resource] = field(default_factory=dict)


def _same_objects(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _endpoint_resources(
    key: ServiceKey, service: Service, workloads: tuple[Workload, ...]
) -> tuple[Resource, ...]:
    return tuple(
        Resource.of(ResourceType.ENDPOINT, cla.cluster_name, cla)
        for cla in endpoints.load_assignments(key, service, workloads)
    )


def _cluster_resources(
    key: ServiceKey, service: Service, mtls: MtlsMode, identities: tuple[str, ...]
) -> tuple[Resource, ...]:
    return tuple(
        Resource.of(ResourceType.CLUSTER, c.name, c)
        for c in clusters.outbound_clusters(key, service, mtls, identities)
    )


def _upstream_targets(state: MeshState, workload: Workload) -> tuple[Service, ...]:
    """The services a workload's upstream listeners lead to: its listeners change
    when they do."""
    return tuple(
        state.services[ServiceKey(u.service, workload.namespace or "")] for u in workload.upstreams
    )
