"""``Aggregator``: the snapshots of every source become one versioned ``MeshState``.

Sources report through a ``Feed`` each. On every snapshot the aggregator merges the
latest snapshot of each source, numbers the result (it alone numbers versions),
replaces every object equal to one in the previous state by that very object (so
translation skips unchanged parts by identity), and hands the state to its listeners
(the publisher, local mode's plan). A refusal changes nothing but the feed's record
of it, which the API shows.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sidemesh.errors import ConfigError
from sidemesh.model import MeshState
from sidemesh.model.policy.documents import Policies
from sidemesh.model.refs import Ref
from sidemesh.sources.protocol import Snapshot

log = logging.getLogger(__name__)

Listener = Callable[[MeshState], None]


class Feed:
    """One source's line into the aggregator, and what that source last said: the
    snapshot in use and the refusals since start."""

    def __init__(self, aggregator: Aggregator, name: str) -> None:
        self.name = name
        """How logs and the API name the source (the file source: its path)."""
        self.snapshot: Snapshot | None = None
        """The source's latest accepted snapshot, in every merge until it sends another."""
        self.rejected = 0
        """How many of the source's inputs were refused since start."""
        self.last_error: ConfigError | None = None
        """Why the latest input was refused; None once an input is accepted again."""
        self.aggregator = aggregator
        """The aggregator fed; a source may read what it serves, and reports only
        through the feed."""

    def offer(self, snapshot: Snapshot) -> MeshState | None:
        """Replace the source's snapshot, whole. Returns the state published from it,
        or None while some other source has not sent its first snapshot yet."""
        self.snapshot = snapshot
        self.last_error = None
        return self.aggregator._merge_and_publish(self)

    def refuse(self, error: ConfigError, what: str | None = None) -> None:
        """The source's latest input is invalid: the mesh keeps the snapshot it had.
        ``what`` names the input in the log ("an edit of mesh.yaml")."""
        self.rejected += 1
        self.last_error = error
        state = self.aggregator.state
        log.error(
            "rejected %s; still serving mesh version %s:\n%s",
            what or f"an update from {self.name}",
            state.version if state is not None else "none",
            error,
        )


class Aggregator:
    """Merges the sources' snapshots into the ``MeshState`` everything downstream reads.

    Merge rule, field by field of ``MeshState``: objects keyed by name (services,
    workloads, gateways, and any keyed mapping ``MeshState`` gains) are the union of
    every source's; when two sources hold the same key with different content, the
    source whose feed was made first wins and the clash is logged; policies likewise, by
    kind, namespace and name. Tuples (warnings) are joined in feed order. Everything
    else (mesh settings) is the first source's: the primary, mesh.yaml in practice. No
    state is published until every source has sent a first snapshot, so proxies never
    see a mesh with a source missing.
    """

    def __init__(self, listeners: Iterable[Listener] = ()) -> None:
        self.listeners: list[Listener] = list(listeners)
        """Called, in order, with each state published."""
        self.state: MeshState | None = None
        """The latest state published; None before the first."""
        self._feeds: list[Feed] = []

    def feed(self, name: str) -> Feed:
        """A line in for one more source (see the merge rule for what order means)."""
        feed = Feed(self, name)
        self._feeds.append(feed)
        return feed

    @property
    def feeds(self) -> tuple[Feed, ...]:
        return tuple(self._feeds)

    def _merge_and_publish(self, changed: Feed) -> MeshState | None:
        snapshots = [(f.name, f.snapshot) for f in self._feeds if f.snapshot is not None]
        if len(snapshots) < len(self._feeds):
            return None
        previous = self.state
        state = _merge((previous.version if previous is not None else 0) + 1, snapshots)
        if previous is not None:
            state = state.reuse_unchanged(previous)
            _warn_if_most_removed(previous, state, changed.name)
        self.state = state
        log.info("loaded %s as mesh version %d", changed.name, state.version)
        for listener in self.listeners:
            listener(state)
        return state


def _merge(version: int, snapshots: Sequence[tuple[str, Snapshot]]) -> MeshState:
    # Field by field rather than naming services, workloads, ...: MeshState grows a
    # field per kind of document, and each must reach the proxies without a change here.
    _, primary = snapshots[0]
    values: dict[str, Any] = {}
    for field in dataclasses.fields(MeshState):
        if not field.init or field.name == "version":
            continue
        value = getattr(primary, field.name)
        if isinstance(value, Policies):
            value, clashes = Policies.union(getattr(s, field.name) for _, s in snapshots)
            for clash in clashes:
                log.warning("policies: %s", clash)
        elif isinstance(value, Mapping):
            value = _union(field.name, [(name, getattr(s, field.name)) for name, s in snapshots])
        elif type(value) is tuple:  # not a NamedTuple: that is one value, not a list
            value = tuple(item for _, s in snapshots for item in getattr(s, field.name))
        values[field.name] = value
    return MeshState(version=version, **values)


def _union(kind: str, mappings: Sequence[tuple[str, Mapping[Any, Any]]]) -> dict[Any, Any]:
    merged: dict[Any, Any] = {}
    owners: dict[Any, str] = {}
    for name, mapping in mappings:
        for key, value in mapping.items():
            if key not in merged:
                merged[key] = value
                owners[key] = name
            elif merged[key] != value:
                log.warning(
                    "%s: %s differs between %s and %s; %s's is used",
                    kind,
                    _describe(key),
                    owners[key],
                    name,
                    owners[key],
                )
    return merged


def _describe(key: Any) -> str:
    """``reviews.default`` for the (name, namespace) pairs that key MeshState's maps."""
    if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key):
        return str(Ref(*key))
    return str(key)


def _warn_if_most_removed(previous: MeshState, state: MeshState, source: str) -> None:
    """A change that removes more than half of the workloads is allowed, but it is the
    kind of change an operator wants to see in the log next to the outage it caused."""
    removed = sorted(str(Ref(*key)) for key in previous.workloads if key not in state.workloads)
    if removed and len(removed) * 2 > len(previous.workloads):
        log.warning(
            "mesh version %d from %s removes %d of %d workloads: %s",
            state.version,
            source,
            len(removed),
            len(previous.workloads),
            ", ".join(removed),
        )
