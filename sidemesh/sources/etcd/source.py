"""etcd as a source: everything under the mesh's prefix, read once, then watched from
the revision read, reported as a ``MeshState`` after each burst of changes.

A watch broken by a lost member or connection resumes from the last revision seen; a
revision compacted away in the meantime is answered by reading the prefix again. A bad
registration or document (one an agent or an older ``apply`` wrote) is logged and left
out, the rest of the mesh serves; the documents ``apply`` writes were validated first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import aetcd
import grpc

from sidemesh.errors import ConfigError, Problem
from sidemesh.model.policy.documents import RawDocument
from sidemesh.model.registry import Layout
from sidemesh.sources.aggregate import Feed
from sidemesh.sources.leave_out import Documents, parse_leaving_out
from sidemesh.sources.protocol import Snapshot

log = logging.getLogger(__name__)

SETTLE_S = 0.05
"""Changes that arrive together (a host's registrations) make one snapshot."""
RETRY_S = (0.2, 0.5, 1.0, 2.0)
EtcdErrors = (aetcd.ClientError, grpc.RpcError, OSError, TimeoutError)


class EtcdSource:
    def __init__(
        self,
        client: aetcd.Client,
        feed: Feed,
        layout: Layout | None = None,
        *,
        where: str = "etcd",
        settle_s: float = SETTLE_S,
    ) -> None:
        """``where``: how messages name the cluster (its endpoints)."""
        self.client = client
        self.feed = feed
        self.layout = layout or Layout()
        self.where = where
        self.settle_s = settle_s
        self.values: dict[bytes, bytes] = {}
        self.revision = 0
        """The revision ``values`` reflect: a watch resumes after it."""
        self.reads = 0
        """How many times the whole prefix was read (1 + re-reads after compaction)."""
        self.left_out: dict[bytes, tuple[str, ...]] = {}
        self._said: dict[bytes, tuple[str, ...]] = {}
        self._changed = asyncio.Event()

    @property
    def name(self) -> str:
        return f"{self.where}{self.layout.prefix}"

    async def load_initial(self) -> Snapshot:
        try:
            await self._read_all()
        except EtcdErrors as exc:
            raise ConfigError(
                self.name, [Problem("", f"cannot read the mesh from etcd: {_reason(exc)}")]
            ) from exc
        snapshot = self.build()
        if snapshot is None:
            assert self.feed.last_error is not None
            raise self.feed.last_error
        return snapshot

    async def _read_all(self) -> None:
        found = await self.client.get_prefix(self.layout.root)
        self.values = {kv.key: kv.value for kv in found}
        self.revision = found.header.revision
        self.reads += 1

    async def watch(self) -> None:
        follower = asyncio.create_task(self._follow())
        try:
            while True:
                await self._changed.wait()
                await asyncio.sleep(self.settle_s)
                self._changed.clear()
                self.build()
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)

    async def _follow(self) -> None:
        failures = 0
        while True:
            try:
                watch = await self.client.watch_prefix(
                    self.layout.root, start_revision=self.revision + 1
                )
                try:
                    async for event in watch:
                        failures = 0
                        key = event.kv.key
                        if event.kind == aetcd.rtypes.EventKind.PUT:
                            self.values[key] = event.kv.value
                        else:
                            self.values.pop(key, None)
                        self.revision = max(self.revision, event.kv.mod_revision)
                        self._changed.set()
                finally:
                    await _cancel(watch)
            except aetcd.exceptions.RevisionCompactedError:
                log.info("%s: revision %d was compacted; reading again", self.name, self.revision)
                try:
                    await self._read_all()
                    self._changed.set()
                except EtcdErrors as exc:
                    log.warning("%s: cannot read the mesh: %s", self.name, _reason(exc))
                    await asyncio.sleep(RETRY_S[-1])
            except EtcdErrors as exc:
                wait = RETRY_S[min(failures, len(RETRY_S) - 1)]
                failures += 1
                log.warning(
                    "%s: watch lost (%s); resuming after revision %d in %.1f s",
                    self.name,
                    _reason(exc),
                    self.revision,
                    wait,
                )
                await asyncio.sleep(wait)

    def build(self) -> Snapshot | None:
        """Report a snapshot of what etcd holds, leaving out bad registrations and
        documents (logged, each once while it stays the same)."""
        mesh: dict[str, Any] = {}
        unreadable: dict[bytes, tuple[str, ...]] = {}
        registrations: list[tuple[bytes, Any]] = []
        documents: list[tuple[bytes, Any]] = []
        for key in sorted(self.values):
            kind = self.layout.kind_of(key)
            try:
                value = json.loads(self.values[key])
            except ValueError as exc:
                unreadable[key] = (f"not JSON: {exc}",)
                continue
            if kind == "mesh" and isinstance(value, dict):
                mesh = value
            elif kind == "registration":
                registrations.append((key, value))
            elif kind == "document":
                documents.append((key, value))

        def make(skip: tuple[bytes, ...]) -> Documents[bytes]:
            first = dict(mesh)
            workloads = list(first.get("workloads") or [])
            docs: Documents[bytes] = Documents(first, [])
            for key, value in registrations:
                if key not in skip:
                    docs.origin[f"workloads[{len(workloads)}]"] = key
                    workloads.append(value)
            first["workloads"] = workloads
            for key, value in documents:
                if key not in skip:
                    where = key.decode(errors="replace")
                    docs.origin[where] = key
                    docs.policies.append(RawDocument(where, value))
            return docs

        outcome = parse_leaving_out(make, self.name)
        if outcome.state is None:
            assert outcome.refusal is not None
            self.feed.refuse(outcome.refusal, f"the mesh in {self.name}")
            return None
        self._report({**unreadable, **outcome.left_out})
        self.feed.offer(outcome.state)
        return outcome.state

    def _report(self, left_out: dict[bytes, tuple[str, ...]]) -> None:
        self.left_out = left_out
        for key, reasons in left_out.items():
            if self._said.get(key) != reasons:
                log.error(
                    "%s is left out of the mesh:\n  %s",
                    key.decode(errors="replace"),
                    "\n  ".join(reasons),
                )
        self._said = dict(left_out)


async def _cancel(watch: Any) -> None:
    with contextlib.suppress(*EtcdErrors):  # the connection it ran on may be gone
        await watch.cancel()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__
