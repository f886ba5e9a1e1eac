"""Snapshots keyed by node id, and watches that wake a stream when its proxy's
snapshot changes. This is the whole interface the ADS server depends on."""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable

from sidemesh.envoy import ResourceType
from sidemesh.xds.snapshot import ConsistencyChecker, ResourceDiff, Snapshot

log = logging.getLogger(__name__)

Notify = Callable[[], None]


class SnapshotCache:
    def __init__(self) -> None:
        self._checker = ConsistencyChecker()
        self._diff = ResourceDiff()
        self._snapshots: dict[str, Snapshot] = {}
        self._watches: dict[str, set[Notify]] = {}

    def get(self, node_id: str) -> Snapshot | None:
        return self._snapshots.get(node_id)

    def set(self, node_id: str, snapshot: Snapshot, *, checked: bool = False) -> None:
        """Publish ``snapshot`` for ``node_id`` after checking it (unless its resources
        were ``checked`` already); raises ``SnapshotInconsistent`` and keeps the previous
        one if it does not hold together."""
        if not checked:
            snapshot.check_consistency(self._checker)
        self._snapshots[node_id] = snapshot
        for notify in list(self._watches.get(node_id, ())):
            notify()

    def restamp(self, node_id: str, state_version: int) -> None:
        """Mark ``node_id``'s snapshot as of ``state_version`` with the very same
        resources (a state that changes nothing it holds): no check, no push, and its
        stream reports the proxy current."""
        old = self._snapshots.get(node_id)
        if old is None or old.state_version == state_version:
            return
        self.set(node_id, Snapshot(old.resources, state_version), checked=True)

    def changed_names(
        self, old: Snapshot, new: Snapshot, rtype: ResourceType
    ) -> builtins.set[str]:  # `set` alone would mean the method below
        """Names of ``rtype`` that differ between two snapshots of one proxy. The part
        shared by a namespace's proxies is compared once for all of them."""
        return self._diff.changed(old.resources, new.resources, rtype)

    def clear(self, node_id: str) -> None:
        self._snapshots.pop(node_id, None)

    def watch(self, node_id: str, notify: Notify) -> Callable[[], None]:
        """Call ``notify`` whenever ``node_id``'s snapshot is replaced. Returns a
        function that cancels the watch."""
        self._watches.setdefault(node_id, set()).add(notify)

        def cancel() -> None:
            watchers = self._watches.get(node_id)
            if watchers is not None:
                watchers.discard(notify)
                if not watchers:
                    del self._watches[node_id]

        return cancel

    def watched_nodes(self) -> list[str]:
        return list(self._watches)
