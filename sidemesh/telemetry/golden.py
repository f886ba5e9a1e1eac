"""Golden signals per edge (caller workload → destination) and per destination service,
over sliding windows, from the cumulative counts each scrape brings.

Each scrape adds one sample: per edge, the caller's cumulative counts. A window's
signals come from the newest sample and the oldest one inside the window: requests per
second, success rate (responses other than 5xx), and latency percentiles estimated
from the histogram buckets' growth (linear within a bucket, as Prometheus's
``histogram_quantile`` does). A counter that went down (the caller's Envoy restarted)
counts from zero. Samples older than the longest window are let go, so memory follows
the mesh's size, not its uptime."""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from sidemesh.model.refs import WorkloadRef
from sidemesh.telemetry.envoy_stats import Traffic

WINDOWS_S = {"10s": 10.0, "1m": 60.0, "10m": 600.0}


class Edge(NamedTuple):
    source: WorkloadRef
    """The calling workload (or gateway)."""
    source_service: str
    """Its service (``productpage.default``), or the gateway's name."""
    destination: str
    """``reviews.default``, or an external host."""


@dataclass(frozen=True)
class Signals:
    requests: int
    """In the window."""
    rps: float
    success_rate: float | None
    """None without requests."""
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    client_errors: int = 0
    """4xx answers in the window (a refusal by policy is a 403)."""
    connections: int = 0
    """Opened in the window (TCP and HTTP alike)."""
    bytes_sent: int = 0
    bytes_received: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "rps": round(self.rps, 3),
            "successRate": None if self.success_rate is None else round(self.success_rate, 5),
            "p50Ms": self.p50_ms,
            "p95Ms": self.p95_ms,
            "p99Ms": self.p99_ms,
            "clientErrors": self.client_errors,
            "connections": self.connections,
            "bytesSent": self.bytes_sent,
            "bytesReceived": self.bytes_received,
        }


class _Sample(NamedTuple):
    at: float
    edges: Mapping[Edge, Traffic]


class GoldenSignals:
    """The samples of the last ``keep_s`` seconds and what follows from them."""

    def __init__(self, keep_s: float = max(WINDOWS_S.values()) + 30) -> None:
        self.keep_s = keep_s
        self._samples: deque[_Sample] = deque()

    def record(self, at: float, edges: Mapping[Edge, Traffic]) -> None:
        self._samples.append(_Sample(at, dict(edges)))
        while self._samples and at - self._samples[0].at > self.keep_s:
            self._samples.popleft()

    @property
    def latest(self) -> Mapping[Edge, Traffic]:
        return self._samples[-1].edges if self._samples else {}

    def edges(self, window_s: float) -> dict[Edge, Signals]:
        first, last = self._bounds(window_s)
        if first is None or last is None:
            return {}
        span = max(last.at - first.at, 1e-9)
        return {
            edge: _signals(_delta(first.edges.get(edge), now), span)
            for edge, now in last.edges.items()
        }

    def services(self, window_s: float) -> dict[str, Signals]:
        """Per destination, every caller's traffic summed."""
        first, last = self._bounds(window_s)
        if first is None or last is None:
            return {}
        span = max(last.at - first.at, 1e-9)
        summed: dict[str, Traffic] = {}
        for edge, now in last.edges.items():
            moved = _delta(first.edges.get(edge), now)
            summed[edge.destination] = _add(summed.get(edge.destination), moved)
        return {name: _signals(traffic, span) for name, traffic in summed.items()}

    def history(self, wanted: Callable[[Edge], bool]) -> list[tuple[float, Signals]]:
        """Between each two samples kept (the last 10 minutes), the signals of the edges
        ``wanted`` picks, summed: a time series for a small chart."""
        samples = list(self._samples)
        out = []
        for before, after in itertools.pairwise(samples):
            summed: Traffic | None = None
            for edge, now in after.edges.items():
                if wanted(edge):
                    summed = _add(summed, _delta(before.edges.get(edge), now))
            span = max(after.at - before.at, 1e-9)
            out.append((after.at, _signals(summed or Traffic(), span)))
        return out

    def _bounds(self, window_s: float) -> tuple[_Sample | None, _Sample | None]:
        if len(self._samples) < 2:
            return None, None
        last = self._samples[-1]
        first = next(
            (s for s in self._samples if last.at - s.at <= window_s + 1e-6), self._samples[0]
        )
        if first is last:
            first = self._samples[-2]
        return first, last


def _delta(before: Traffic | None, now: Traffic) -> Traffic:
    if before is None or now.requests < before.requests or now.connections < before.connections:
        return now  # new, or its Envoy restarted: counted from zero
    return Traffic(
        connections=now.connections - before.connections,
        bytes_sent=now.bytes_sent - before.bytes_sent,
        bytes_received=now.bytes_received - before.bytes_received,
        requests=now.requests - before.requests,
        by_class={k: v - before.by_class.get(k, 0) for k, v in now.by_class.items()},
        latency_buckets=tuple(
            (bound, n - m)
            for (bound, n), (_, m) in zip(
                now.latency_buckets, before.latency_buckets or now.latency_buckets, strict=False
            )
        )
        if before.latency_buckets
        else now.latency_buckets,
    )


def _add(a: Traffic | None, b: Traffic) -> Traffic:
    if a is None:
        return b
    classes = {k: a.by_class.get(k, 0) + b.by_class.get(k, 0) for k in {*a.by_class, *b.by_class}}
    buckets = (
        tuple(
            (bound, n + m)
            for (bound, n), (_, m) in zip(a.latency_buckets, b.latency_buckets, strict=False)
        )
        if a.latency_buckets and b.latency_buckets
        else a.latency_buckets or b.latency_buckets
    )
    return Traffic(
        a.requests + b.requests,
        classes,
        buckets,
        a.connections + b.connections,
        a.bytes_sent + b.bytes_sent,
        a.bytes_received + b.bytes_received,
    )


def _signals(traffic: Traffic, span_s: float) -> Signals:
    answered = sum(traffic.by_class.values())
    success = None if answered == 0 else 1.0 - traffic.errors / answered
    return Signals(
        requests=traffic.requests,
        rps=traffic.requests / span_s,
        success_rate=success,
        p50_ms=quantile(0.50, traffic.latency_buckets),
        p95_ms=quantile(0.95, traffic.latency_buckets),
        p99_ms=quantile(0.99, traffic.latency_buckets),
        client_errors=traffic.by_class.get("4xx", 0),
        connections=traffic.connections,
        bytes_sent=traffic.bytes_sent,
        bytes_received=traffic.bytes_received,
    )


def quantile(q: float, buckets: Iterable[tuple[float, int]]) -> float | None:
    """The ``q`` quantile of a cumulative histogram (upper bound, count at or under),
    interpolated linearly within its bucket; None if it is empty."""
    buckets = list(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0
    for bound, count in buckets:
        if count >= rank:
            if count == lower_count or math.isinf(bound):
                return lower_bound
            return round(
                lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count),
                3,
            )
        lower_bound, lower_count = bound, count
    return buckets[-1][0]
