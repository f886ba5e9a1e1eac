"""Simulated Envoy sidecars for benchmarks: real ``grpc.aio`` ADS streams, driven the
way Envoy drives them, ACKing every response.

Each ``SimulatedEnvoy`` opens one stream (state of the world or delta) with node id
``sidecar~<workload>~<namespace>`` and subscribes as a sidecar does: clusters by
wildcard, then endpoints for the outbound clusters it was sent, then listeners by
wildcard, then the route configuration ``outbound-http``. It never validates what it
receives; it only counts the bytes, so a benchmark can report what a push costs.

Responses are parsed with a deserializer that also returns the message's size on the
wire, which is the exact number of bytes the server serialized for it.

Like Envoy, a simulated sidecar whose stream fails opens a new one after a jittered
exponential backoff, starting over (it never reuses what it had). A burst of streams
can fail this way: gRPC core cancels calls the server application has not yet picked
up once more than ``grpc.server.max_pending_requests`` (1,000 by default) are waiting.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from grpc.aio import EOF  # type: ignore[attr-defined]  # grpc-stubs lag grpcio

from sidemesh.envoy import ResourceType
from sidemesh.envoy.names import OUTBOUND_ROUTE_CONFIG

SERVICE = "/envoy.service.discovery.v3.AggregatedDiscoveryService"
SOTW_METHOD = f"{SERVICE}/StreamAggregatedResources"
DELTA_METHOD = f"{SERVICE}/DeltaAggregatedResources"

CDS = ResourceType.CLUSTER.url
EDS = ResourceType.ENDPOINT.url
LDS = ResourceType.LISTENER.url
RDS = ResourceType.ROUTE.url
VHDS = ResourceType.VIRTUAL_HOST.url

OUTBOUND_PREFIX = "outbound|"
"""Outbound clusters get their endpoints by EDS; inbound ones are static."""

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # Each channel its own connection: without this, channels to one target share one.
    ("grpc.use_local_subchannel_pool", 1),
    # Envoy sets no limit on what it receives; a SotW response of a big mesh is large.
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
]

WRITE_TIMEOUT_S = 30.0
"""Longest wait for one request to be accepted by the channel (flow control)."""
RETRY_BASE_S = 0.5
RETRY_MAX_S = 5.0
"""Backoff between stream attempts: base doubling up to max, jittered ±50%
(Envoy's ADS backoff starts at 500 ms too)."""


@dataclass
class ClientStats:
    """Counters shared by every simulated Envoy of one run (one event loop)."""

    bytes_received: int = 0
    responses: int = 0
    requests: int = 0
    bytes_by_type: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    """Streams opened again after one failed."""
    failures: dict[str, int] = field(default_factory=dict)
    """Failed streams by gRPC status code."""
    errors: list[str] = field(default_factory=list)
    """The first few failures, in full."""

    def failed(self, node_id: str, code: str, detail: str) -> None:
        self.failures[code] = self.failures.get(code, 0) + 1
        if len(self.errors) < 20:
            self.errors.append(f"{node_id}: {code}: {detail}")

    def count(self, size: int, type_url: str) -> None:
        self.bytes_received += size
        self.responses += 1
        short = type_url.rsplit(".", 1)[-1]
        self.bytes_by_type[short] = self.bytes_by_type.get(short, 0) + size


Sized = tuple[int, Any]


def _sized(parse: Callable[[bytes], Any]) -> Callable[[bytes], Sized]:
    def deserialize(data: bytes) -> Sized:
        return len(data), parse(data)

    return deserialize


_cluster_names: dict[bytes, str] = {}
"""Cluster name by packed cluster: every proxy is sent the same outbound clusters, so
each is parsed once, not once per proxy."""


def _has_vhds(packed: bytes) -> bool:
    config = route_pb2.RouteConfiguration()
    config.ParseFromString(packed)
    return config.HasField("vhds")


def _cluster_name(packed: bytes) -> str:
    name = _cluster_names.get(packed)
    if name is None:
        name = cluster_pb2.Cluster.FromString(packed).name
        _cluster_names[packed] = name
    return name


def open_channels(target: str, count: int) -> list[grpc.aio.Channel]:
    return [grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) for _ in range(count)]


class SimulatedEnvoy:
    """One sidecar's ADS stream. ``run`` returns when the stream ends; cancel it to stop."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        node_id: str,
        *,
        delta: bool,
        stats: ClientStats,
        asks: Sequence[str] = (),
    ) -> None:
        """``asks``: Hosts its app calls (``outbound-http/<host>``), asked for over VHDS
        once its routes are in, as Envoy's on_demand filter would (delta only)."""
        self.channel = channel
        self.node_id = node_id
        self.delta = delta
        self.stats = stats
        self.asks = list(asks)
        self._first = True

    async def run(self) -> None:
        """Keep a stream open until cancelled or until the server ends one cleanly."""
        attempt = 0
        while True:
            self._first = True
            try:
                if self.delta:
                    await self._run_delta()
                else:
                    await self._run_sotw()
                return
            except grpc.aio.AioRpcError as exc:
                self.stats.failed(self.node_id, exc.code().name, str(exc.details()))
            except TimeoutError:
                self.stats.failed(
                    self.node_id, "WRITE_TIMEOUT", "a request was not written in time"
                )
            attempt += 1
            self.stats.reconnects += 1
            backoff = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (attempt - 1))
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))

    async def _write(self, call: Any, request: Any) -> None:
        if self._first:
            # Envoy's set_node_on_first_message_only: the server reads it once.
            request.node.id = self.node_id
            self._first = False
        self.stats.requests += 1
        await asyncio.wait_for(call.write(request), WRITE_TIMEOUT_S)

    # state of the world

    async def _run_sotw(self) -> None:
        open_stream: Any = self.channel.stream_stream(
            SOTW_METHOD,
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=_sized(discovery_pb2.DiscoveryResponse.FromString),
        )
        call = open_stream()
        names: dict[str, list[str]] = {CDS: [], EDS: [], LDS: [], RDS: []}
        last: dict[str, tuple[str, str]] = {}  # type → (version_info, nonce) last accepted

        def request(type_url: str) -> discovery_pb2.DiscoveryRequest:
            version, nonce = last.get(type_url, ("", ""))
            return discovery_pb2.DiscoveryRequest(
                type_url=type_url,
                resource_names=names[type_url],
                version_info=version,
                response_nonce=nonce,
            )

        await self._write(call, request(CDS))
        while True:
            item = await call.read()
            if item is EOF:
                return
            size, response = item
            url = response.type_url
            self.stats.count(size, url)
            first_of_type = url not in last
            last[url] = (response.version_info, response.nonce)
            if url == CDS:
                outbound = sorted(
                    name
                    for name in (_cluster_name(r.value) for r in response.resources)
                    if name.startswith(OUTBOUND_PREFIX)
                )
                await self._write(call, request(CDS))  # ACK
                if outbound != names[EDS]:
                    names[EDS] = outbound
                    await self._write(call, request(EDS))
            elif url in names:
                await self._write(call, request(url))  # ACK
                if url == EDS and first_of_type:
                    await self._write(call, request(LDS))
                elif url == LDS and first_of_type:
                    names[RDS] = [OUTBOUND_ROUTE_CONFIG]
                    await self._write(call, request(RDS))

    # delta

    async def _run_delta(self) -> None:
        open_stream: Any = self.channel.stream_stream(
            DELTA_METHOD,
            request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
            response_deserializer=_sized(discovery_pb2.DeltaDiscoveryResponse.FromString),
        )
        call = open_stream()
        clusters: set[str] = set()
        eds: set[str] = set()
        seen: set[str] = set()
        listeners_asked = False

        def request(
            type_url: str, nonce: str = "", subscribe: list[str] | None = None
        ) -> discovery_pb2.DeltaDiscoveryRequest:
            return discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url,
                response_nonce=nonce,
                resource_names_subscribe=subscribe or [],
            )

        await self._write(call, request(CDS))
        while True:
            item = await call.read()
            if item is EOF:
                return
            size, response = item
            url = response.type_url
            self.stats.count(size, url)
            first_of_type = url not in seen
            seen.add(url)
            await self._write(call, request(url, response.nonce))  # ACK
            if url == CDS:
                clusters.update(r.name for r in response.resources)
                clusters.difference_update(response.removed_resources)
                outbound = {n for n in clusters if n.startswith(OUTBOUND_PREFIX)}
                added, gone = sorted(outbound - eds), sorted(eds - outbound)
                if added or gone:
                    eds = outbound
                    subscription = request(EDS, subscribe=added)
                    subscription.resource_names_unsubscribe.extend(gone)
                    await self._write(call, subscription)
                elif not listeners_asked:
                    # On demand a sidecar may hold no service yet: no endpoints to wait for.
                    listeners_asked = True
                    await self._write(call, request(LDS))
            elif url == EDS and first_of_type and not listeners_asked:
                listeners_asked = True
                await self._write(call, request(LDS))
            elif url == LDS and first_of_type:
                await self._write(call, request(RDS, subscribe=[OUTBOUND_ROUTE_CONFIG]))
            elif (
                url == RDS
                and first_of_type
                and response.resources
                and _has_vhds(response.resources[0].resource.value)
            ):
                await self._write(call, request(VHDS))
                if self.asks:
                    await self._write(call, request(VHDS, subscribe=self.asks))


async def run_clients(
    target: str,
    node_ids: list[str],
    *,
    delta: bool,
    stats: ClientStats,
    streams_per_channel: int = 50,
    asks: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[grpc.aio.Channel], list[asyncio.Task[None]]]:
    """Start one simulated Envoy per node id; the caller cancels the tasks and closes
    the channels."""
    channels = open_channels(target, max(1, math.ceil(len(node_ids) / streams_per_channel)))
    tasks = [
        asyncio.create_task(
            SimulatedEnvoy(
                channels[i // streams_per_channel],
                node_id,
                delta=delta,
                stats=stats,
                asks=(asks or {}).get(node_id, ()),
            ).run(),
            name=f"envoy {node_id}",
        )
        for i, node_id in enumerate(node_ids)
    ]
    return channels, tasks


async def stop_clients(
    channels: list[grpc.aio.Channel], tasks: list[asyncio.Task[None]], timeout: float = 10.0
) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
    for channel in channels:
        await asyncio.wait_for(channel.close(grace=None), timeout)
