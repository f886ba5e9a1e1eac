"""Asking many proxies' Envoy admin the same question at once, each within a timeout.

Envoy's admin listens on 127.0.0.1 only (it can change and dump everything), so the
control plane reaches the admin of the proxies on its own host, which is every proxy
in local mode; a proxy elsewhere is reported as not answering."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from sidemesh.model.refs import WorkloadRef

ADMIN_HOST = "127.0.0.1"
ADMIN_TIMEOUT_S = 1.0
"""How long one proxy's admin may take. An Envoy answers its admin in milliseconds; one
that does not within a second is stuck or gone, and waiting longer for it would only
hold up the answer about every other proxy."""
MAX_IN_FLIGHT = 64
"""Admin requests open at once: a mesh of thousands of proxies costs the control plane
a bounded number of sockets, never one per proxy."""


@dataclass(frozen=True)
class ProxyAdmin:
    """A proxy to ask: the workload or gateway it serves, and its admin port."""

    ref: WorkloadRef
    kind: str
    """``workload`` or ``gateway``."""
    admin_port: int

    @property
    def url(self) -> str:
        return f"http://{ADMIN_HOST}:{self.admin_port}"


@dataclass(frozen=True)
class AdminAnswer:
    """One proxy's JSON answer, or why there is none (``error``, for an operator)."""

    proxy: ProxyAdmin
    body: Any = None
    error: str | None = None


async def ask_all(
    proxies: Iterable[ProxyAdmin], path: str, timeout_s: float = ADMIN_TIMEOUT_S
) -> list[AdminAnswer]:
    """``GET path`` of every proxy's admin, concurrently; each answer (or its error) in
    the order given, within about ``timeout_s`` of the last one starting."""
    proxies = list(proxies)
    shared = _shared_ports(proxies)
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    # trust_env=False: the control plane may run with HTTP_PROXY set (apps in the mesh
    # do), and admin requests to 127.0.0.1 must never go through a proxy.
    async with httpx.AsyncClient(trust_env=False, timeout=timeout_s) as client:
        return list(
            await asyncio.gather(
                *(_ask(client, gate, proxy, path, timeout_s, shared) for proxy in proxies)
            )
        )


async def _ask(
    client: httpx.AsyncClient,
    gate: asyncio.Semaphore,
    proxy: ProxyAdmin,
    path: str,
    timeout_s: float,
    shared: dict[int, Sequence[WorkloadRef]],
) -> AdminAnswer:
    others = [ref for ref in shared.get(proxy.admin_port, ()) if ref != proxy.ref]
    if others:
        names = ", ".join(str(ref) for ref in others)
        return AdminAnswer(
            proxy,
            error=(
                f"admin port {proxy.admin_port} is also that of {names}: the control plane "
                f"cannot tell which Envoy answers on {ADMIN_HOST}:{proxy.admin_port} "
                "(give each sidecar its own adminPort)"
            ),
        )
    url = proxy.url + path
    async with gate:
        try:
            async with asyncio.timeout(timeout_s):
                reply = await client.get(url)
            reply.raise_for_status()
            return AdminAnswer(proxy, body=reply.json())
        except TimeoutError:
            return AdminAnswer(
                proxy, error=f"no answer from its Envoy admin ({url}) within {timeout_s:g}s"
            )
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            return AdminAnswer(proxy, error=f"cannot read its Envoy admin ({url}): {reason}")
        except ValueError as exc:  # not JSON: something else listens on that port
            return AdminAnswer(proxy, error=f"its Envoy admin ({url}) did not answer JSON: {exc}")


def _shared_ports(proxies: Sequence[ProxyAdmin]) -> dict[int, Sequence[WorkloadRef]]:
    """Each admin port claimed by more than one proxy, with the proxies claiming it
    (sidecars on other hosts keep the default 15000): whichever Envoy answers on this
    host's port, its answer cannot be told to be any one of theirs."""
    by_port: dict[int, list[WorkloadRef]] = defaultdict(list)
    for proxy in proxies:
        by_port[proxy.admin_port].append(proxy.ref)
    return {port: refs for port, refs in by_port.items() if len(refs) > 1}
