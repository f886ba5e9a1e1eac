"""Prometheus metrics of xDS delivery, read from the status board at scrape time
(nothing is counted twice on the push path)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from sidemesh.xds.status import StatusBoard


class XdsCollector(Collector):
    def __init__(self, status: StatusBoard) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        connected = GaugeMetricFamily(
            "sidemesh_xds_connected_proxies", "Proxies with an open ADS stream", labels=["mode"]
        )
        by_mode: dict[str, int] = {}
        for proxy in self.status.proxies.values():
            if proxy.connected:
                by_mode[proxy.mode] = by_mode.get(proxy.mode, 0) + 1
        for mode, count in sorted(by_mode.items()):
            connected.add_metric([mode], count)
        yield connected

        nacks = CounterMetricFamily(
            "sidemesh_xds_nacks", "Configs proxies rejected, by resource type", labels=["type"]
        )
        pushes = CounterMetricFamily(
            "sidemesh_xds_pushes", "Responses sent to proxies, by resource type", labels=["type"]
        )
        nack_totals: dict[str, int] = {}
        push_totals: dict[str, int] = {}
        for proxy in self.status.proxies.values():
            for rtype, ts in proxy.types.items():
                nack_totals[rtype.short] = nack_totals.get(rtype.short, 0) + ts.nacks
                push_totals[rtype.short] = push_totals.get(rtype.short, 0) + ts.pushes
        for name, value in sorted(nack_totals.items()):
            nacks.add_metric([name], value)
        for name, value in sorted(push_totals.items()):
            pushes.add_metric([name], value)
        yield nacks
        yield pushes
        unsynced = GaugeMetricFamily(
            "sidemesh_xds_unsynced_proxies",
            "Connected proxies that have not ACKed everything sent to them",
        )
        unsynced.add_metric(
            [], sum(1 for p in self.status.proxies.values() if p.connected and not p.synced)
        )
        yield unsynced
        latency = self.status.ack_latency
        acks = HistogramMetricFamily(
            "sidemesh_xds_push_ack_seconds",
            "From sending a config to a proxy to its ACK of it",
        )
        acks.add_metric(
            [],
            [
                *(
                    (f"{bound:g}", float(n))
                    for bound, n in zip(latency.bounds, latency.counts, strict=False)
                ),
                ("+Inf", float(latency.counts[-1])),
            ],
            sum_value=latency.total,
        )
        yield acks
