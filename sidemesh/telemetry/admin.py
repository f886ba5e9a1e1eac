"""Asking many proxies' Envoy admin the same question at once, each within a timeout.

Envoy's admin listens on a Unix socket only the mesh's user may open (it can change and
dump everything), so the control plane reaches the admin of the proxies on its own host,
which is every proxy in local mode; a proxy elsewhere is reported as not answering."""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from sidemesh.model.refs import WorkloadRef

ADMIN_TIMEOUT_S = 1.0
"""How long one proxy's admin may take. An Envoy answers its admin in milliseconds; one
that does not within a second is stuck or gone, and waiting longer for it would only
hold up the answer about every other proxy."""
MAX_IN_FLIGHT = 64
"""Admin requests open at once: a mesh of thousands of proxies costs the control plane
a bounded number of sockets, never one per proxy."""


@dataclass(frozen=True)
class ProxyAdmin:
    """A proxy to ask: the workload or gateway it serves, and its admin's Unix socket."""

    ref: WorkloadRef
    kind: str
    """``workload`` or ``gateway``."""
    socket: str

    @property
    def url(self) -> str:
        """How an operator names this admin in a message."""
        return f"unix:{self.socket}"


@dataclass(frozen=True)
class AdminAnswer:
    """One proxy's JSON answer, or why there is none (``error``, for an operator)."""

    proxy: ProxyAdmin
    body: Any = None
    error: str | None = None


@functools.cache
def _unused_tls() -> ssl.SSLContext:
    """The TLS context every transport must be given, made once: the admin speaks
    plain HTTP on its socket, and building a default context (loading the system's CA
    certificates) for each of hundreds of proxies every round cost 20 ms apiece."""
    return ssl.create_default_context()


def admin_client(socket: str, timeout_s: float = ADMIN_TIMEOUT_S) -> httpx.AsyncClient:
    """An HTTP client to one Envoy admin over its Unix socket; paths go after
    ``http://envoy``. trust_env=False: the caller may run with HTTP_PROXY set (apps in
    the mesh do), and admin requests must never go through a proxy."""
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=socket, verify=_unused_tls()),
        base_url="http://envoy",
        trust_env=False,
        timeout=timeout_s,
    )


def admin_client_sync(socket: str, timeout_s: float = 5.0) -> httpx.Client:
    """``admin_client`` for a command that asks one Envoy once (``proxy-config``, the
    sidecar's startup probe)."""
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=socket, verify=_unused_tls()),
        base_url="http://envoy",
        trust_env=False,
        timeout=timeout_s,
    )


async def ask_all(
    proxies: Iterable[ProxyAdmin], path: str, timeout_s: float = ADMIN_TIMEOUT_S
) -> list[AdminAnswer]:
    """``GET path`` of every proxy's admin, concurrently; each answer (or its error) in
    the order given, within about ``timeout_s`` of the last one starting."""
    proxies = list(proxies)
    shared = _shared_sockets(proxies)
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    return list(
        await asyncio.gather(*(_ask(gate, proxy, path, timeout_s, shared) for proxy in proxies))
    )


async def _ask(
    gate: asyncio.Semaphore,
    proxy: ProxyAdmin,
    path: str,
    timeout_s: float,
    shared: dict[str, Sequence[WorkloadRef]],
) -> AdminAnswer:
    others = [ref for ref in shared.get(proxy.socket, ()) if ref != proxy.ref]
    if others:
        names = ", ".join(str(ref) for ref in others)
        return AdminAnswer(
            proxy,
            error=(
                f"admin socket {proxy.socket} is also that of {names}: the control plane "
                "cannot tell which Envoy answers there (give each sidecar its own "
                "--socket-dir)"
            ),
        )
    where = f"{proxy.url}{path}"
    async with gate:
        try:
            async with asyncio.timeout(timeout_s), admin_client(proxy.socket, timeout_s) as client:
                reply = await client.get(path)
            reply.raise_for_status()
            return AdminAnswer(proxy, body=reply.json())
        except TimeoutError:
            return AdminAnswer(
                proxy, error=f"no answer from its Envoy admin ({where}) within {timeout_s:g}s"
            )
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            return AdminAnswer(proxy, error=f"cannot read its Envoy admin ({where}): {reason}")
        except ValueError as exc:  # not JSON: something else listens on that socket
            return AdminAnswer(proxy, error=f"its Envoy admin ({where}) did not answer JSON: {exc}")


def _shared_sockets(proxies: Sequence[ProxyAdmin]) -> dict[str, Sequence[WorkloadRef]]:
    """Each admin socket claimed by more than one proxy, with the proxies claiming it:
    whichever Envoy answers there, its answer cannot be told to be any one of theirs."""
    by_socket: dict[str, list[WorkloadRef]] = defaultdict(list)
    for proxy in proxies:
        by_socket[proxy.socket].append(proxy.ref)
    return {socket: refs for socket, refs in by_socket.items() if len(refs) > 1}
