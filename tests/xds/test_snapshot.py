"""Snapshots: versions by content, the consistency check, and the cache's watches."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from sidemesh.envoy import ProxyId, ProxyResources, ResourceType, Translator
from sidemesh.errors import SnapshotInconsistent
from sidemesh.model import MeshState
from sidemesh.xds import Snapshot, SnapshotCache
from sidemesh.xds.snapshot import content_version

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
