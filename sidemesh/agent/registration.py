"""Registration: an agent puts its workload into the mesh's registry itself, so a
workload on any host joins the mesh without anyone editing mesh.yaml.

``EtcdRegistration`` keeps the workload's entry (a ``workloads:`` entry of mesh.yaml:
service, address, ports, labels) under an etcd lease it refreshes every third of the
TTL: a host that dies drops out when its lease expires; a lease lost while etcd was
unreachable longer than the TTL is replaced by a new one as soon as etcd answers; a
clean stop revokes the lease, which removes the entry at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import aetcd
import grpc

from sidemesh.model.registry import DEFAULT_LEASE_TTL_S, GRPC_KEEPALIVE, Layout, grpc_target

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5
Failures = (aetcd.ClientError, grpc.RpcError, OSError, TimeoutError)


class EtcdRegistration:
    def __init__(
        self,
        endpoints: str,
        namespace: str,
        entry: Mapping[str, Any],
        *,
        layout: Layout | None = None,
        ttl_s: int = DEFAULT_LEASE_TTL_S,
    ) -> None:
        """``entry``: the workload as mesh.yaml writes one (its ``name`` included)."""
        host, port = grpc_target(endpoints)
        self.client = aetcd.Client(
            host=host, port=port, timeout=REQUEST_TIMEOUT_S, options=GRPC_KEEPALIVE
        )
        self.endpoints = endpoints
        self.layout = layout or Layout()
        self.key = self.layout.registration(namespace, str(entry["name"]))
        self.value = json.dumps(dict(entry), sort_keys=True).encode()
        self.ttl_s = ttl_s
        self.registered = asyncio.Event()
        """Set while the entry is in etcd under a live lease."""
        self.registrations = 0
        """How many leases it took (1 + one per lease lost)."""
        self._lease: Any = None

    async def run(self) -> None:
        """Register, then keep the lease alive, until cancelled."""
        while True:
            try:
                self._lease = await self.client.lease(self.ttl_s)
                await self.client.put(self.key, self.value, lease=self._lease)
                self.registrations += 1
                self.registered.set()
                log.info(
                    "registered %s in etcd (%s), lease %x, TTL %d s",
                    self.key.decode(),
                    self.endpoints,
                    self._lease.id,
                    self.ttl_s,
                )
                await self._keep_alive()
            except Failures as exc:
                log.warning("registration of %s: %s; trying again", self.key.decode(), exc)
            self.registered.clear()
            await asyncio.sleep(1.0)

    async def _keep_alive(self) -> None:
        """Returns once the lease is lost (expired while etcd was away)."""
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                reply = await self._lease.refresh()
            except Failures as exc:
                log.warning("cannot refresh the lease of %s: %s", self.key.decode(), exc)
                continue  # the lease lives until its TTL: try again before then
            ttl = reply.TTL if reply is not None else 0
            if ttl <= 0:
                log.warning("the lease of %s expired; registering again", self.key.decode())
                return

    async def stop(self) -> None:
        """Deregister at once (revoke the lease), then close."""
        if self._lease is not None:
            with contextlib.suppress(*Failures):
                await self.client.revoke_lease(self._lease.id)
                log.info("deregistered %s", self.key.decode())
        self.registered.clear()
        with contextlib.suppress(*Failures):
            await self.client.close()
