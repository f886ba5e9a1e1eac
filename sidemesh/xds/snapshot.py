"""An immutable set of resources for one proxy, checked before it is published."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from sidemesh.envoy import ProxyResources, Resource, ResourceType
from sidemesh.envoy.outbound import clusters_of
from sidemesh.errors import SnapshotInconsistent

Reference = tuple[ResourceType, str]


@dataclass(frozen=True)
class Snapshot:
    """What one proxy should have. ``state_version`` is the MeshState it came from."""

    resources: ProxyResources
    state_version: int

    @cached_property
    def _type_versions(self) -> dict[ResourceType, str]:
        return {}

    def type_version(self, rtype: ResourceType) -> str:
        """A version for all resources of one type: changes when any of them does."""
        versions = self._type_versions
        if rtype not in versions:
            versions[rtype] = content_version(self.resources[rtype].values())
        return versions[rtype]

    def check_consistency(self, checker: ConsistencyChecker | None = None) -> None:
        """Raise ``SnapshotInconsistent`` naming every reference that points nowhere."""
        (checker or ConsistencyChecker()).check(self)


class ConsistencyChecker:
    """Checks snapshots for dangling references. The part every proxy of a namespace
    shares is one object for all of them, so it is checked once, not once per proxy:
    with 1,000 services that is most of the work of a push."""

    KEEP = 64

    def __init__(self) -> None:
        # Verified shared parts, kept alive so their ids stay theirs.
        self._verified: dict[int, object] = {}

    def check(self, snapshot: Snapshot) -> None:
        resources = snapshot.resources
        missing: list[str] = []
        shared = resources.shared
        if shared and id(shared) not in self._verified:
            # Shared resources refer only to shared ones; if not, check them whole.
            missing = _dangling(shared.values(), lambda t: shared.get(t, {}))
            if missing:
                missing = _dangling(shared.values(), resources.__getitem__)
            elif shared:
                if len(self._verified) >= self.KEEP:
                    self._verified.pop(next(iter(self._verified)))
                self._verified[id(shared)] = shared
        missing += _dangling(resources.local.values(), resources.__getitem__)
        if missing:
            raise SnapshotInconsistent("; ".join(missing))


class ResourceDiff:
    """Which names changed between two proxies' resource sets. Unchanged resources are
    the very same objects from one translation to the next, so identity tells; and the
    shared maps are compared once per pair for every proxy that has them."""

    KEEP = 32

    def __init__(self) -> None:
        self._shared: dict[tuple[int, int], tuple[object, object, frozenset[str]]] = {}

    def changed(self, old: ProxyResources, new: ProxyResources, rtype: ResourceType) -> set[str]:
        names = set(_changed(old.local.get(rtype, {}), new.local.get(rtype, {})))
        before, after = old.shared.get(rtype, {}), new.shared.get(rtype, {})
        if before is not after:
            key = (id(before), id(after))
            hit = self._shared.get(key)
            if hit is None:
                if len(self._shared) >= self.KEEP:
                    self._shared.pop(next(iter(self._shared)))
                hit = (before, after, frozenset(_changed(before, after)))  # keeps ids alive
                self._shared[key] = hit
            names |= hit[2]
        return names


def _changed(before: Mapping[str, Resource], after: Mapping[str, Resource]) -> Iterator[str]:
    if before is after:
        return
    for name, res in after.items():
        if before.get(name) is not res:
            yield name
    for name in before:
        if name not in after:
            yield name


def _dangling(
    maps: Iterable[Mapping[str, Resource]],
    lookup: Callable[[ResourceType], Mapping[str, Resource]],
) -> list[str]:
    return [
        f"{res.type.short} {res.name!r} refers to {ref_type.short[:-1]} {ref_name!r}"
        for resource_map in maps
        for res in resource_map.values()
        for ref_type, ref_name in references(res)
        if ref_name not in lookup(ref_type)
    ]


def content_version(resources: Iterable[Resource]) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for res in sorted(resources, key=lambda r: r.name):
        digest.update(res.name.encode())
        digest.update(res.version.encode())
    return digest.hexdigest()


# References of a resource depend only on its content, and a resource's version is a
# hash of its content: remember them by version so shared resources are read once.
_references_by_version: dict[tuple[ResourceType, str], tuple[Reference, ...]] = {}


def references(res: Resource) -> tuple[Reference, ...]:
    key = (res.type, res.version)
    refs = _references_by_version.get(key)
    if refs is None:
        refs = tuple(_find_references(res))
        if len(_references_by_version) > 100_000:
            _references_by_version.clear()
        _references_by_version[key] = refs
    return refs


def _find_references(res: Resource) -> Iterator[Reference]:
    msg = res.message
    if isinstance(msg, cluster_pb2.Cluster) and msg.type == cluster_pb2.Cluster.EDS:
        yield ResourceType.ENDPOINT, msg.eds_cluster_config.service_name or msg.name
    elif isinstance(msg, listener_pb2.Listener):
        for chain in msg.filter_chains:
            for flt in chain.filters:
                if flt.typed_config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
                    hcm = hcm_pb2.HttpConnectionManager()
                    flt.typed_config.Unpack(hcm)
                    if hcm.HasField("rds"):
                        yield ResourceType.ROUTE, hcm.rds.route_config_name
                    else:
                        yield from _route_clusters(hcm.route_config)
                elif flt.typed_config.Is(tcp_proxy_pb2.TcpProxy.DESCRIPTOR):
                    tcp = tcp_proxy_pb2.TcpProxy()
                    flt.typed_config.Unpack(tcp)
                    yield ResourceType.CLUSTER, tcp.cluster
    elif isinstance(msg, route_pb2.RouteConfiguration):
        yield from _route_clusters(msg)
    elif isinstance(msg, route_components_pb2.VirtualHost):
        yield from ((ResourceType.CLUSTER, name) for name in clusters_of(msg))


def _route_clusters(config: route_pb2.RouteConfiguration) -> Iterator[Reference]:
    for vhost in config.virtual_hosts:
        yield from ((ResourceType.CLUSTER, name) for name in clusters_of(vhost))
