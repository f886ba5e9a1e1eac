"""What each connected proxy has: per type, the version sent and the version ACKed,
and every NACK with Envoy's own error. This is the one callbacks object the ADS
server reports to; the API reads it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from sidemesh.envoy import ResourceType

log = logging.getLogger(__name__)


class XdsCallbacks(Protocol):
    """Hooks the ADS server calls; one object implements them all."""

    def on_stream_open(self, node_id: str, mode: str, admin_socket: str | None) -> None: ...
    def on_stream_closed(self, node_id: str) -> None: ...
    def on_snapshot(self, node_id: str, state_version: int) -> None: ...
    def on_sent(
        self, node_id: str, rtype: ResourceType, version: str, state_version: int, count: int
    ) -> None: ...
    def on_ack(self, node_id: str, rtype: ResourceType, version: str) -> None: ...
    def on_nack(self, node_id: str, rtype: ResourceType, version: str, detail: str) -> None: ...


@dataclass
class Nack:
    version: str
    detail: str
    at: float


ACK_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class LatencyHistogram:
    """Cumulative counts of observations at or under each bound, as Prometheus wants."""

    bounds: tuple[float, ...] = ACK_BUCKETS_S
    counts: list[int] = field(default_factory=lambda: [0] * (len(ACK_BUCKETS_S) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(self.bounds):
            if seconds <= bound:
                self.counts[i] += 1
        self.counts[-1] += 1  # +Inf
        self.total += seconds


@dataclass
class TypeStatus:
    sent_version: str = ""
    sent_state_version: int = 0
    acked_version: str = ""
    acked_state_version: int = 0
    nacks: int = 0
    pushes: int = 0
    last_nack: Nack | None = None
    # (state version, when it was sent) of each version sent and not yet answered
    _pending: dict[str, tuple[int, float]] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "sentVersion": self.sent_version,
            "ackedVersion": self.acked_version,
            "ackedStateVersion": self.acked_state_version,
            "synced": self.sent_version == self.acked_version,
            "nacks": self.nacks,
            "pushes": self.pushes,
            "lastNack": None
            if self.last_nack is None
            else {
                "version": self.last_nack.version,
                "error": self.last_nack.detail,
                "at": self.last_nack.at,
            },
        }


@dataclass
class ProxyStatus:
    node_id: str
    mode: str
    connected_at: float
    admin_socket: str | None = None
    """Where its Envoy admin listens, as its node metadata says (on this host in local
    mode; a proxy elsewhere cannot be asked)."""
    connected: bool = True
    state_version: int = 0
    """The mesh version of the newest snapshot the stream has answered from."""
    types: dict[ResourceType, TypeStatus] = field(default_factory=dict)

    @property
    def synced(self) -> bool:
        """The proxy has ACKed everything sent from its newest snapshot."""
        return bool(self.types) and all(
            t.sent_version == t.acked_version for t in self.types.values()
        )

    def type(self, rtype: ResourceType) -> TypeStatus:
        return self.types.setdefault(rtype, TypeStatus())

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node_id,
            "xdsMode": self.mode,
            "connected": self.connected,
            "connectedAt": self.connected_at,
            "adminSocket": self.admin_socket,
            "stateVersion": self.state_version,
            "synced": self.synced,
            "types": {t.short: s.to_json() for t, s in self.types.items()},
        }


class StatusBoard:
    """``XdsCallbacks`` that keeps ``ProxyStatus`` per node and logs NACKs."""

    def __init__(self) -> None:
        self.proxies: dict[str, ProxyStatus] = {}
        self.nacks_total = 0
        self.ack_latency = LatencyHistogram()
        """From sending a version to a proxy to its ACK of it, over every push."""
        # A reconnecting Envoy may open its new stream before the old one is closed.
        self._open_streams: dict[str, int] = {}

    def on_stream_open(self, node_id: str, mode: str, admin_socket: str | None) -> None:
        self._open_streams[node_id] = self._open_streams.get(node_id, 0) + 1
        self.proxies[node_id] = ProxyStatus(
            node_id=node_id, mode=mode, connected_at=time.time(), admin_socket=admin_socket or None
        )
        log.info("proxy %s connected (%s xDS)", node_id, mode, extra={"node": node_id})

    def on_stream_closed(self, node_id: str) -> None:
        remaining = self._open_streams.get(node_id, 1) - 1
        if remaining > 0:
            self._open_streams[node_id] = remaining
            return
        self._open_streams.pop(node_id, None)
        status = self.proxies.get(node_id)
        if status is not None:
            status.connected = False
        log.info("proxy %s disconnected", node_id, extra={"node": node_id})

    def on_snapshot(self, node_id: str, state_version: int) -> None:
        status = self._status(node_id)
        status.state_version = max(status.state_version, state_version)

    def on_sent(
        self, node_id: str, rtype: ResourceType, version: str, state_version: int, count: int
    ) -> None:
        ts = self._status(node_id).type(rtype)
        ts.sent_version = version
        ts.sent_state_version = state_version
        ts.pushes += 1
        ts._pending[version] = (state_version, time.monotonic())

    def on_ack(self, node_id: str, rtype: ResourceType, version: str) -> None:
        ts = self._status(node_id).type(rtype)
        ts.acked_version = version
        sent = ts._pending.pop(version, None)
        if sent is not None:
            ts.acked_state_version = sent[0]
            self.ack_latency.observe(time.monotonic() - sent[1])
        ts._pending.clear()

    def on_nack(self, node_id: str, rtype: ResourceType, version: str, detail: str) -> None:
        ts = self._status(node_id).type(rtype)
        ts.nacks += 1
        ts.last_nack = Nack(version=version, detail=detail, at=time.time())
        ts._pending.pop(version, None)
        self.nacks_total += 1
        log.error(
            "proxy %s rejected %s version %s; it keeps its last good config: %s",
            node_id,
            rtype.short,
            version,
            detail,
        )

    def _status(self, node_id: str) -> ProxyStatus:
        status = self.proxies.get(node_id)
        if status is None:
            status = ProxyStatus(node_id=node_id, mode="?", connected_at=time.time())
            self.proxies[node_id] = status
        return status

    def to_json(self) -> list[dict[str, Any]]:
        return [p.to_json() for p in sorted(self.proxies.values(), key=lambda p: p.node_id)]
