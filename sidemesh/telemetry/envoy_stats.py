"""Reading a caller's Envoy stats (``/stats?format=json&histogram_buckets=cumulative``)
into what it sent to each destination: requests, responses by class, the latency
histogram, connections opened and bytes each way (for TCP services the only measure), as
counted since the Envoy started.

A caller's outbound cluster is one destination: ``outbound|<port>|<subset>|<svc>.<ns>``
(a mesh service) or ``outbound|<port>||<host>`` (a host outside the mesh); Envoy counts
each request there once, whoever answers it, which makes the caller's side the one
place an edge is counted exactly once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STATS_PATH = (
    "/stats?format=json&histogram_buckets=cumulative"
    "&filter=^cluster\\.outbound\\|.*\\.(upstream_rq_[1-5]xx|upstream_rq_total|upstream_rq_time"
    "|upstream_cx_total|upstream_cx_tx_bytes_total|upstream_cx_rx_bytes_total)$"
)
"""What is asked of each proxy: only its outbound clusters' request counters and
latency, not its thousands of other stats."""

_STAT = re.compile(
    r"^cluster\.outbound\|(\d+)\|[^|]*\|(.+)\."
    r"(upstream_rq_[1-5]xx|upstream_rq_total|upstream_rq_time"
    r"|upstream_cx_total|upstream_cx_tx_bytes_total|upstream_cx_rx_bytes_total)$"
)
_CONNECTION_COUNTERS = {
    "upstream_cx_total": "connections",
    "upstream_cx_tx_bytes_total": "bytes_sent",
    "upstream_cx_rx_bytes_total": "bytes_received",
}


@dataclass
class Traffic:
    """Cumulative counts one caller has for one destination."""

    requests: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    """``2xx`` ... ``5xx`` → responses."""
    latency_buckets: tuple[tuple[float, int], ...] = ()
    """(upper bound in ms, requests at or under it), cumulative, as Envoy last flushed."""
    connections: int = 0
    """Connections opened to the destination."""
    bytes_sent: int = 0
    bytes_received: int = 0

    @property
    def errors(self) -> int:
        return self.by_class.get("5xx", 0)


def destination_traffic(body: Mapping[str, Any]) -> dict[str, Traffic]:
    """Destination (``reviews.default`` or an external host) → what the caller sent it.
    A destination with subsets (several clusters) is summed."""
    out: dict[str, Traffic] = {}
    for item in body.get("stats", ()):
        if "name" in item:
            match = _STAT.match(str(item["name"]))
            if match is None:
                continue
            traffic = out.setdefault(match.group(2), Traffic())
            value = int(item.get("value", 0))
            counter = _CONNECTION_COUNTERS.get(match.group(3))
            if counter is not None:
                setattr(traffic, counter, getattr(traffic, counter) + value)
            elif match.group(3) == "upstream_rq_total":
                traffic.requests += value
            else:
                kind = match.group(3).removeprefix("upstream_rq_")
                traffic.by_class[kind] = traffic.by_class.get(kind, 0) + value
        for histogram in item.get("histograms", ()) if isinstance(item, dict) else ():
            match = _STAT.match(str(histogram.get("name", "")))
            if match is None:
                continue
            traffic = out.setdefault(match.group(2), Traffic())
            buckets = tuple(
                (float(b["upper_bound"]), int(b.get("cumulative", 0)))
                for b in histogram.get("buckets", ())
            )
            traffic.latency_buckets = _sum_buckets(traffic.latency_buckets, buckets)
    return out


def _sum_buckets(
    a: tuple[tuple[float, int], ...], b: tuple[tuple[float, int], ...]
) -> tuple[tuple[float, int], ...]:
    if not a:
        return b
    return tuple((bound, n + m) for (bound, n), (_, m) in zip(a, b, strict=False))
