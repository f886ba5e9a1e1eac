"""Registration: an agent puts its workload into the mesh's registry itself, so a
workload on any host joins the mesh without anyone editing mesh.yaml.

``EtcdRegistration`` keeps the workload's entry (a ``workloads:`` entry of mesh.yaml:
service, address, ports, labels) under an etcd lease it refreshes every third of the
TTL: a host that dies drops out when its lease expires; a lease lost while etcd was
unreachable longer than the TTL is replaced by a new one as soon as etcd answers; a
clean stop revokes the lease, which removes the entry at once. ``RestRegistration``
does the same through the control plane, for a host that may not reach etcd."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import aetcd
import grpc
import httpx

from sidemesh.model.registry import DEFAULT_LEASE_TTL_S, GRPC_KEEPALIVE, Layout, grpc_target

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5
Failures = (aetcd.ClientError, grpc.RpcError, OSError, TimeoutError)


class Registration(Protocol):
    """What the agent runs beside its Envoy to keep its workload registered."""

    registered: asyncio.Event

    async def run(self) -> None: ...

    async def stop(self) -> None: ...


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


class RestRegistration:
    """The same, for a host that may not reach etcd: the workload is posted to the
    control plane (``POST /v1/registrations`` on its CA address, over TLS checked
    against the mesh's root, with the workload's token), which writes it into etcd
    under a lease; posting again every third of the TTL keeps it there."""

    def __init__(
        self,
        ca_urls: list[str],
        namespace: str,
        entry: Mapping[str, Any],
        *,
        token: Callable[[], str],
        ca_bundle: Path,
        ttl_s: int = DEFAULT_LEASE_TTL_S,
    ) -> None:
        """``token`` reads the workload's token when it is needed (it may be written
        after the agent starts)."""
        self.ca_urls = ca_urls
        self.namespace = namespace
        self.entry = dict(entry)
        self.name = str(entry["name"])
        self.token = token
        self.ca_bundle = ca_bundle
        self.ttl_s = ttl_s
        self.registered = asyncio.Event()
        self.registrations = 0

    def _client(self) -> httpx.AsyncClient:
        verify = ssl.create_default_context(cafile=str(self.ca_bundle))
        return httpx.AsyncClient(verify=verify, timeout=REQUEST_TIMEOUT_S)

    async def run(self) -> None:
        """Post the workload, then again every third of the TTL, until cancelled; a
        control plane that does not answer is tried at the next address."""
        body = {"namespace": self.namespace, "workload": self.entry, "ttlSeconds": self.ttl_s}
        turn = 0
        while True:
            url = self.ca_urls[turn % len(self.ca_urls)]
            try:
                async with self._client() as client:
                    response = await client.post(
                        f"{url}/v1/registrations",
                        json=body,
                        headers={"Authorization": f"Bearer {self.token()}"},
                    )
                if response.status_code == 201:
                    if not self.registered.is_set():
                        self.registrations += 1
                        log.info("registered %s through %s, TTL %d s", self.name, url, self.ttl_s)
                    self.registered.set()
                    await asyncio.sleep(self.ttl_s / 3)
                    continue
                log.warning(
                    "registration of %s refused by %s: %s %s",
                    self.name,
                    url,
                    response.status_code,
                    response.text[:300],
                )
            except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
                log.warning("registration of %s through %s: %s", self.name, url, exc)
            self.registered.clear()
            turn += 1
            await asyncio.sleep(1.0)

    async def stop(self) -> None:
        """Deregister at once, through whichever control plane answers."""
        for url in self.ca_urls:
            try:
                async with self._client() as client:
                    response = await client.delete(
                        f"{url}/v1/registrations/{self.namespace}/{self.name}",
                        headers={"Authorization": f"Bearer {self.token()}"},
                    )
                if response.status_code in (200, 404):
                    log.info("deregistered %s", self.name)
                    break
            except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
                log.warning("deregistering %s through %s: %s", self.name, url, exc)
        self.registered.clear()
