"""``RegistrationRelay``: registrations that come over REST (``POST /v1/registrations``,
from hosts that may not reach etcd) written into etcd for them, under a lease.

The host posts its workload again every third of the lease's TTL, as an agent
refreshes its own lease: each post refreshes the lease (or takes a new one if it ran
out), so a host that stops posting drops out when the lease expires, exactly as one
registered directly in etcd does, and every control plane replica sees the same
registry. A clean stop deletes it at once (the lease is revoked)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import aetcd
import grpc

from sidemesh.model.registry import Layout
from sidemesh.sources.etcd.client import etcd_client

log = logging.getLogger(__name__)

Failures = (aetcd.ClientError, grpc.RpcError, OSError, TimeoutError)


class RelayUnavailable(Exception):
    """etcd did not take the registration; the host should post again."""


class RegistrationRelay:
    def __init__(self, endpoints: str, layout: Layout | None = None) -> None:
        self.endpoints = endpoints
        self.layout = layout or Layout()
        self._client: aetcd.Client | None = None
        self._leases: dict[bytes, Any] = {}
        """The lease of each workload registered through here, by its key."""

    def _etcd(self) -> aetcd.Client:
        if self._client is None:
            self._client = etcd_client(self.endpoints)
        return self._client

    async def register(self, namespace: str, entry: Mapping[str, Any], ttl_s: int) -> None:
        """Put ``entry`` (a ``workloads:`` entry, its ``name`` included) under a lease
        of ``ttl_s`` seconds, refreshing the one it has. Raises ``RelayUnavailable``."""
        key = self.layout.registration(namespace, str(entry["name"]))
        value = json.dumps(dict(entry), sort_keys=True).encode()
        client = self._etcd()
        try:
            lease = self._leases.get(key)
            if lease is not None:
                reply = await lease.refresh()
                if reply is None or reply.TTL <= 0 or ttl_s < reply.TTL:
                    lease = None  # expired while the host was away, or a new TTL asked
            if lease is None:
                lease = await client.lease(ttl_s)
                self._leases[key] = lease
                log.info("registered %s for a host over REST, TTL %d s", key.decode(), ttl_s)
            await client.put(key, value, lease=lease)
        except Failures as exc:
            self._leases.pop(key, None)
            raise RelayUnavailable(f"etcd ({self.endpoints}) did not take it: {exc}") from exc

    async def deregister(self, namespace: str, name: str) -> bool:
        """Remove a workload registered through here; False if none was."""
        key = self.layout.registration(namespace, name)
        lease = self._leases.pop(key, None)
        if lease is None:
            return False
        try:
            await self._etcd().revoke_lease(lease.id)
        except Failures as exc:
            raise RelayUnavailable(f"etcd ({self.endpoints}) did not take it: {exc}") from exc
        log.info("deregistered %s for a host over REST", key.decode())
        return True

    async def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(*Failures):
                await self._client.close()
