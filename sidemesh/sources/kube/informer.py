"""One kind of Kubernetes object kept current: list, then watch from the list's
resourceVersion, as client-go's reflector does.

A watch the server ends, or a connection that drops, resumes from the last
resourceVersion seen (bookmarks move it forward without an object). ``410 Gone`` (the
version was compacted away) lists again. A kind whose API is not there (a CRD not
installed yet) holds no objects and is looked for again later. Every change calls
``on_change``; the informer never interprets objects."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from sidemesh.sources.kube.client import Gone, KubeApi, KubeApiError

log = logging.getLogger(__name__)

RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Waits before reconnecting after consecutive failures (the last repeats)."""
ABSENT_RETRY_S = 30.0
"""How often a kind the server does not serve (404) is looked for again."""


@dataclass(frozen=True)
class Resource:
    kind: str
    api_version: str
    plural: str

    @property
    def path(self) -> str:
        """The cluster-wide collection: ``/api/v1/pods``, ``/apis/<group>/<v>/<plural>``."""
        prefix = "/api" if "/" not in self.api_version else "/apis"
        return f"{prefix}/{self.api_version}/{self.plural}"


Key = tuple[str, str]
"""(namespace, name)."""


class Informer:
    def __init__(self, api: KubeApi, resource: Resource, on_change: Callable[[], None]) -> None:
        self.api = api
        self.resource = resource
        self.on_change = on_change
        self.objects: dict[Key, dict[str, Any]] = {}
        self.resource_version: str | None = None
        """The last version seen; None means the next step is a list."""
        self.synced = asyncio.Event()
        """Set once the first list is in (or the kind is known to be absent)."""
        self.lists = 0
        """How many times the informer listed (1 + relists after 410 Gone)."""

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                if self.resource_version is None and not await self._list():
                    await asyncio.sleep(ABSENT_RETRY_S)
                    continue
                await self._watch()
                failures = 0
            except Gone:
                log.info(
                    "%s: resourceVersion %s is too old; listing again",
                    self.resource.kind,
                    self.resource_version,
                )
                self.resource_version = None
            except (KubeApiError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                wait = RETRY_S[min(failures, len(RETRY_S) - 1)]
                failures += 1
                log.warning(
                    "%s: watch failed (%s); resuming from resourceVersion %s in %.1f s",
                    self.resource.kind,
                    exc or type(exc).__name__,
                    self.resource_version,
                    wait,
                )
                await asyncio.sleep(wait)

    async def _list(self) -> bool:
        """False if the server does not serve the kind."""
        try:
            body = await self.api.get(self.resource.path)
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            if self.objects or not self.synced.is_set():
                self.objects = {}
                self.synced.set()
                self.on_change()
            return False
        self.objects = {}
        for item in body.get("items") or []:
            self._store(item)
        self.resource_version = str((body.get("metadata") or {}).get("resourceVersion") or "0")
        self.lists += 1
        self.synced.set()
        self.on_change()
        return True

    async def _watch(self) -> None:
        assert self.resource_version is not None
        async for event in self.api.watch(self.resource.path, self.resource_version):
            kind, obj = event.get("type"), event.get("object") or {}
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if kind in ("ADDED", "MODIFIED"):
                self._store(obj)
            elif kind == "DELETED":
                self.objects.pop(_key(obj), None)
            if version:
                self.resource_version = str(version)
            if kind != "BOOKMARK":
                self.on_change()

    def _store(self, obj: dict[str, Any]) -> None:
        # List items carry no kind (the list does); policy validation needs it.
        obj.setdefault("kind", self.resource.kind)
        obj.setdefault("apiVersion", self.resource.api_version)
        self.objects[_key(obj)] = obj


def _key(obj: dict[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
