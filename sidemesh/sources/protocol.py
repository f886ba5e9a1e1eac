"""What every source of truth is to the rest of the control plane: ``Source`` and the
``Snapshot`` it reports.

A source knows part of the mesh (the file: what mesh.yaml says; later, REST
registration: the workloads that registered; etcd: the other hosts'; Kubernetes: its
Services, Pods and policy objects). Whenever that changes it reports everything it
now knows, whole, to the ``Feed`` it was made with, or reports why it refuses its
latest input. It never numbers versions, compares with earlier states or talks to
whoever uses the mesh: the ``Aggregator`` alone does.
"""

from __future__ import annotations

from typing import Protocol, TypeAlias

from sidemesh.model import MeshState

Snapshot: TypeAlias = MeshState
"""Everything one source knows, validated by the model's loader, whole (not a delta).

A ``MeshState`` because the loader builds one and it holds every kind of document the
model has (a kind the model gains reaches the aggregator without a change here). Its
``version`` means nothing: the aggregator numbers the states it publishes."""


class Source(Protocol):
    """One source of truth, made with the ``Feed`` (``Aggregator.feed``) it reports to."""

    async def load_initial(self) -> Snapshot:
        """Report the first snapshot, and return it, before the control plane serves.
        Raises ``ConfigError`` if the source has nothing the mesh could start from.
        Async because a remote source (Kubernetes, etcd) lists what it knows first."""
        ...

    async def watch(self) -> None:
        """Report each change (a new snapshot or a refusal) until cancelled. Work that
        may block (reading, resolving names) runs off the event loop; reporting runs on
        it, the thread that owns the aggregator."""
        ...
