"""Snapshots: versions by content, the consistency check, and the cache's watches."""

from __future__ import annotations

import re
from types import MappingProxyType

import pytest

from sidemesh.envoy import ProxyId, ProxyResources, Resource, ResourceType, Translator
from sidemesh.envoy.outbound import upstream_listener
from sidemesh.errors import SnapshotInconsistent
from sidemesh.model import MeshState
from sidemesh.xds import Snapshot, SnapshotCache
from sidemesh.xds.snapshot import ConsistencyChecker, content_version

PRODUCTPAGE = ProxyId("productpage-1", "default")
RATINGS = "outbound|50051||ratings.default"


def _resources(state: MeshState) -> ProxyResources:
    return Translator().for_proxy(state, PRODUCTPAGE)


def _without_endpoints(res: ProxyResources, name: str) -> ProxyResources:
    by_type = {t: dict(res[t]) for t in ResourceType}
    del by_type[ResourceType.ENDPOINT][name]
    return ProxyResources({t: MappingProxyType(m) for t, m in by_type.items()})


def test_translated_snapshot_holds_together(multi_service_state: MeshState) -> None:
    Snapshot(_resources(multi_service_state), 1).check_consistency()


def test_content_version_ignores_order_and_follows_content(
    multi_service_state: MeshState,
) -> None:
    clusters = list(_resources(multi_service_state)[ResourceType.CLUSTER].values())
    assert content_version(clusters) == content_version(reversed(clusters))
    assert content_version(clusters) != content_version(clusters[1:])


def test_dangling_reference_is_named(multi_service_state: MeshState) -> None:
    broken = Snapshot(_without_endpoints(_resources(multi_service_state), RATINGS), 1)
    with pytest.raises(SnapshotInconsistent) as info:
        broken.check_consistency()
    assert RATINGS in str(info.value)
    assert "endpoint" in str(info.value)


def test_cache_keeps_the_last_good_snapshot_and_wakes_watchers(
    multi_service_state: MeshState,
) -> None:
    cache = SnapshotCache()
    node = PRODUCTPAGE.node_id
    woken: list[str] = []
    cancel = cache.watch(node, lambda: woken.append("changed"))
    good = Snapshot(_resources(multi_service_state), 1)
    cache.set(node, good)
    assert cache.get(node) is good
    assert woken == ["changed"]

    broken = Snapshot(_without_endpoints(_resources(multi_service_state), RATINGS), 2)
    with pytest.raises(SnapshotInconsistent):
        cache.set(node, broken)
    assert cache.get(node) is good
    assert woken == ["changed"]

    cancel()
    cache.set(node, Snapshot(_resources(multi_service_state), 3))
    assert woken == ["changed"]
    assert cache.watched_nodes() == []


def test_shared_part_is_checked_once_and_local_parts_always(
    multi_service_state: MeshState,
) -> None:
    translator = Translator()
    checker = ConsistencyChecker()
    first = translator.for_proxy(multi_service_state, ProxyId("productpage-1", "default"))
    second = translator.for_proxy(multi_service_state, ProxyId("ratings-1", "default"))
    assert first.shared is second.shared  # one object for the namespace's proxies
    Snapshot(first, 1).check_consistency(checker)
    assert list(checker._verified) == [id(first.shared)]
    # A proxy's own listener pointing nowhere is still caught with the shared part known.
    bad = upstream_listener(
        "upstream|1|nowhere", 1, "outbound|1||nowhere.default", http=False, streaming=False
    )
    broken = second.with_extra(Resource.of(ResourceType.LISTENER, bad.name, bad))
    with pytest.raises(SnapshotInconsistent, match=re.escape("outbound|1||nowhere.default")):
        Snapshot(broken, 1).check_consistency(checker)
