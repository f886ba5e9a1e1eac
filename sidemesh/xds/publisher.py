"""``Publisher``: each new MeshState becomes snapshots for the proxies that are
connected (and only those: a proxy that never connects costs nothing).

Sidecars on delta xDS learn services on demand (``envoy.outbound.demand``): the
publisher keeps, per such proxy, the Hosts it has asked for and translates it with
them. (They are kept while it is connected: Envoy does not ask again for a Host it
was once answered, so a service taken away could not be learned again.) A new
state is translated only for the proxies it can change: a proxy on demand that holds
none of the services that changed (an endpoint moved elsewhere) is left alone, so an
endpoint change costs work for the proxies holding that service, not for the mesh."""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from sidemesh.envoy import ProxyId, ProxyResources, Translator
from sidemesh.envoy.outbound.demand import Reason
from sidemesh.errors import SnapshotInconsistent, TranslationError
from sidemesh.model import MeshState, ServiceKey
from sidemesh.model.state import workload_service_key
from sidemesh.xds.cache import SnapshotCache
from sidemesh.xds.snapshot import Snapshot

log = logging.getLogger(__name__)

ResourceHook = Callable[[ProxyId, ProxyResources], ProxyResources]
"""Rewrites a proxy's resources before they are published (used by tests to make a
config Envoy rejects)."""

MAX_HOSTS_ASKED = 1024
"""Hosts one proxy may ask for on demand (a bound on what it costs the control plane)."""
ON_DEMAND_MODE = "delta"
"""VHDS, which on-demand virtual hosts use, exists only in delta xDS."""


class Publisher:
    def __init__(
        self,
        cache: SnapshotCache,
        state: MeshState | None = None,
        translator: Translator | None = None,
        hook: ResourceHook | None = None,
        *,
        on_demand: bool = True,
    ) -> None:
        """``on_demand``: delta sidecars learn services as they call them (False:
        every proxy is sent the whole mesh)."""
        self.cache = cache
        self.state = state or MeshState.empty()
        self.translator = translator or Translator()
        self.hook = hook
        self.on_demand = on_demand
        self._connected: Counter[str] = Counter()
        self._requested: dict[str, set[str]] = {}
        """Per proxy on demand: each Host it asked for."""
        self._depends: dict[str, frozenset[ServiceKey]] = {}
        """Per proxy on demand: the services its last snapshot was made from."""
        self.translations = 0
        """Proxies translated (for tests and benches: a change should cost few)."""

    def update_state(self, state: MeshState) -> None:
        """Make ``state`` current and push it to every connected proxy it changes."""
        self.state = state
        changed = self.translator.changed_services(state)
        for node_id in list(self._connected):
            depends = self._depends.get(node_id)
            if changed is not None and depends is not None and depends.isdisjoint(changed):
                # On demand, and nothing it holds changed: the same config, now of
                # this version (so status counts it as current), untranslated.
                self.cache.restamp(node_id, state.version)
                continue
            self._publish(node_id)

    def republish(self) -> None:
        """Translate every connected proxy again."""
        self._depends.clear()
        self.update_state(self.state)

    def proxy_connected(self, node_id: str, mode: str = "sotw") -> None:
        self._connected[node_id] += 1
        if self.on_demand and mode == ON_DEMAND_MODE and node_id.startswith("sidecar~"):
            self._requested.setdefault(node_id, set())
        else:
            self._requested.pop(node_id, None)
        self._publish(node_id)

    def proxy_disconnected(self, node_id: str) -> None:
        self._connected[node_id] -= 1
        if self._connected[node_id] <= 0:
            del self._connected[node_id]
            self._requested.pop(node_id, None)
            self._depends.pop(node_id, None)
            self.cache.clear(node_id)
            with contextlib.suppress(ValueError):
                self.translator.forget(ProxyId.parse(node_id))

    def hosts_asked(self, node_id: str, names: Iterable[str]) -> None:
        """A proxy on demand asked for these Hosts (``outbound-http/<host>``): answer
        them in its next snapshot, now."""
        requested = self._requested.get(node_id)
        if requested is None:
            log.warning("%s asked for hosts on demand but is sent the whole mesh", node_id)
            return
        for name in names:
            if len(requested) >= MAX_HOSTS_ASKED and name not in requested:
                # An app that sends user-given Hosts must not grow the control plane
                # without bound: past the limit a Host is not answered, and Envoy
                # gives up on it after its timeout.
                log.warning(
                    "%s asked for more than %d hosts on demand; not answering %s",
                    node_id,
                    MAX_HOSTS_ASKED,
                    name,
                )
                continue
            requested.add(name)
        self._publish(node_id)

    def holding(self, key: ServiceKey) -> list[str]:
        """The proxies on demand that hold ``key``: those a change of its endpoints is
        pushed to (its own sidecars are translated again too, but hold nothing of it
        unless they call it)."""
        return [node for node in self._depends if key in (self.held(node) or ())]

    def held(self, node_id: str) -> Mapping[ServiceKey, Reason] | None:
        """The services a proxy on demand holds, and why; None if it is sent all."""
        snapshot = self.cache.get(node_id)
        return None if snapshot is None else snapshot.resources.held

    def _publish(self, node_id: str) -> None:
        try:
            proxy = ProxyId.parse(node_id)
        except ValueError as exc:
            log.warning("ignoring proxy: %s", exc)
            return
        requested = self._requested.get(node_id)
        self.translations += 1
        try:
            resources = self.translator.for_proxy(
                self.state, proxy, None if requested is None else frozenset(requested)
            )
        except TranslationError as exc:
            # The sidecar may start before its workload is declared: it waits,
            # keeping whatever it had, and gets config once the workload appears.
            log.warning("%s; it gets no new config until it is", exc)
            self._depends.pop(node_id, None)
            return
        if self.hook is not None:
            resources = self.hook(proxy, resources)
        try:
            self.cache.set(node_id, Snapshot(resources, self.state.version))
        except SnapshotInconsistent as exc:
            self._depends.pop(node_id, None)  # translated afresh at each state until it holds
            log.error(
                "not pushing mesh version %d to %s: the config does not hold together: %s",
                self.state.version,
                node_id,
                exc,
            )
            return
        if resources.held is None:
            self._depends.pop(node_id, None)
            return
        workload = self.state.workload(proxy.workload, proxy.namespace)
        own = {workload_service_key(workload)} if workload is not None else set()
        self._depends[node_id] = frozenset(resources.held) | own
