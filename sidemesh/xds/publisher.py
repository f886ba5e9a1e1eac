"""``Publisher``: each new MeshState becomes snapshots for the proxies that are
connected (and only those: a proxy that never connects costs nothing)."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable

from sidemesh.envoy import ProxyId, ProxyResources, Translator
from sidemesh.errors import SnapshotInconsistent, TranslationError
from sidemesh.model import MeshState
from sidemesh.xds.cache import SnapshotCache
from sidemesh.xds.snapshot import Snapshot

log = logging.getLogger(__name__)

ResourceHook = Callable[[ProxyId, ProxyResources], ProxyResources]
"""Rewrites a proxy's resources before they are published (used by tests to make a
config Envoy rejects)."""


class Publisher:
    def __init__(
        self,
        cache: SnapshotCache,
        state: MeshState | None = None,
        translator: Translator | None = None,
        hook: ResourceHook | None = None,
    ) -> None:
        self.cache = cache
        self.state = state or MeshState.empty()
        self.translator = translator or Translator()
        self.hook = hook
        self._connected: Counter[str] = Counter()

    def update_state(self, state: MeshState) -> None:
        """Make ``state`` current and push it to every connected proxy."""
        self.state = state
        for node_id in list(self._connected):
            self._publish(node_id)

    def republish(self) -> None:
        self.update_state(self.state)

    def proxy_connected(self, node_id: str) -> None:
        self._connected[node_id] += 1
        self._publish(node_id)

    def proxy_disconnected(self, node_id: str) -> None:
        self._connected[node_id] -= 1
        if self._connected[node_id] <= 0:
            del self._connected[node_id]
            self.cache.clear(node_id)
            with contextlib.suppress(ValueError):
                self.translator.forget(ProxyId.parse(node_id))

    def _publish(self, node_id: str) -> None:
        try:
            proxy = ProxyId.parse(node_id)
        except ValueError as exc:
            log.warning("ignoring proxy: %s", exc)
            return
        try:
            resources = self.translator.for_proxy(self.state, proxy)
        except TranslationError as exc:
            # The sidecar may start before its workload is declared: it waits,
            # keeping whatever it had, and gets config once the workload appears.
            log.warning("%s; it gets no new config until it is", exc)
            return
        if self.hook is not None:
            resources = self.hook(proxy, resources)
        try:
            self.cache.set(node_id, Snapshot(resources, self.state.version))
        except SnapshotInconsistent as exc:
            log.error(
                "not pushing mesh version %d to %s: the config does not hold together: %s",
                self.state.version,
                node_id,
                exc,
            )
