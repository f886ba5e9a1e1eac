"""``/v1/stats`` and ``/v1/graph``: the golden signals the telemetry scraper keeps, per
service, per edge and per workload, and the service graph they draw."""

from __future__ import annotations

import math
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from sidemesh.api.response import ApiModel
from sidemesh.model import MeshState, MtlsMode, ServiceKey
from sidemesh.telemetry import WINDOWS_S, Scraper, Signals


def window_seconds(window: str) -> float:
    if window not in WINDOWS_S:
        raise ValueError(f"window {window!r} is not one of {', '.join(WINDOWS_S)}")
    return WINDOWS_S[window]


class SignalsOut(ApiModel):
    requests: int
    """In the window."""
    rps: float
    success_rate: float | None
    """Of the answered requests, the share not 5xx; None when none was answered."""
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    client_errors: int
    """4xx answers in the window (a refusal by policy is a 403)."""
    connections: int
    """Opened in the window (TCP and HTTP alike)."""
    bytes_sent: int
    bytes_received: int

    @classmethod
    def of(cls, signals: Signals) -> SignalsOut:
        return cls.model_validate(signals.to_json())


# Each row's names come before its signals, as its bases are listed signals first
# (pydantic orders the fields of the base listed last first).


class _Service(ApiModel):
    service: str
    """``reviews.default``, or a host outside the mesh."""


class ServiceSignalsOut(SignalsOut, _Service):
    pass


class _WorkloadEdge(ApiModel):
    source: str
    """The calling workload (``productpage-v1.default``)."""
    source_service: str
    """Its service (``productpage.default``), or the gateway's name."""
    destination: str
    """``reviews.default``, or a host outside the mesh."""


class WorkloadSignalsOut(SignalsOut, _WorkloadEdge):
    pass


class StatsOut(ApiModel):
    window: str
    scrapes: int
    """Rounds of scraping every proxy's stats since the control plane started."""
    unanswered: dict[str, str]
    """The proxies that did not answer the last round, with why."""
    services: list[ServiceSignalsOut]
    """Per destination, every caller summed."""
    workloads: list[WorkloadSignalsOut]
    """Per calling workload and destination."""


class GraphNodeOut(ApiModel):
    id: str
    """``reviews.default``, a gateway's ``name.namespace``, or a host outside the mesh."""
    kind: str
    """``service``, ``gateway`` or ``external``."""


class _ServiceEdge(ApiModel):
    source: str
    destination: str
    mtls: bool
    """Whether its traffic is mutual TLS (the destination's mode is not DISABLE)."""


class GraphEdgeOut(SignalsOut, _ServiceEdge):
    pass


class GraphOut(ApiModel):
    window: str
    nodes: list[GraphNodeOut]
    edges: list[GraphEdgeOut]
    """Between services, every source workload of one service summed: counts add; of
    the percentiles the worst is shown."""


def stats_response(scraper: Scraper, state: MeshState, window: str) -> StatsOut:
    seconds = window_seconds(window)
    services = scraper.signals.services(seconds)
    edges = scraper.signals.edges(seconds)
    return StatsOut(
        window=window,
        scrapes=scraper.scrapes,
        unanswered=scraper.last_errors,
        services=[
            ServiceSignalsOut(service=name, **SignalsOut.of(signals).model_dump())
            for name, signals in sorted(services.items())
        ],
        workloads=[
            WorkloadSignalsOut(
                source=str(edge.source),
                source_service=edge.source_service,
                destination=edge.destination,
                **SignalsOut.of(signals).model_dump(),
            )
            for edge, signals in sorted(edges.items())
        ],
    )


def graph_response(scraper: Scraper, state: MeshState, window: str) -> GraphOut:
    """Nodes (services, gateways, hosts outside the mesh) and edges between services
    (every source workload of one service summed), each with its signals and whether
    its traffic is mTLS."""
    seconds = window_seconds(window)
    by_pair: dict[tuple[str, str], list[Signals]] = {}
    for edge, signals in scraper.signals.edges(seconds).items():
        by_pair.setdefault((edge.source_service, edge.destination), []).append(signals)
    mesh_services = {str(key): key for key in state.services}
    nodes = {str(key): GraphNodeOut(id=str(key), kind="service") for key in state.services}
    for name, namespace in state.gateways:  # whether or not anything came in yet
        nodes[f"{name}.{namespace}"] = GraphNodeOut(id=f"{name}.{namespace}", kind="gateway")
    for source, destination in by_pair:
        nodes.setdefault(source, GraphNodeOut(id=source, kind="gateway"))
        nodes.setdefault(destination, GraphNodeOut(id=destination, kind="external"))
    return GraphOut(
        window=window,
        nodes=sorted(nodes.values(), key=lambda n: n.id),
        edges=[
            GraphEdgeOut(
                source=source,
                destination=destination,
                mtls=_mtls(state, mesh_services.get(destination)),
                **_summed(signals).model_dump(),
            )
            for (source, destination), signals in sorted(by_pair.items())
        ],
    )


def _mtls(state: MeshState, key: ServiceKey | None) -> bool:
    return key is not None and state.mtls_mode(state.services[key]) is not MtlsMode.DISABLE


def _summed(signals: list[Signals]) -> SignalsOut:
    """Several workloads of one service calling one destination, as one edge: counts
    add; of the percentiles the worst is shown (they cannot be added)."""
    requests = sum(s.requests for s in signals)
    rates = [(s.success_rate, s.requests) for s in signals if s.success_rate is not None]
    answered = sum(n for _, n in rates)

    def worst(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return max(present) if present else None

    return SignalsOut(
        requests=requests,
        rps=round(sum(s.rps for s in signals), 3),
        success_rate=(round(sum(r * n for r, n in rates) / answered, 5) if answered else None),
        p50_ms=worst([s.p50_ms for s in signals]),
        p95_ms=worst([s.p95_ms for s in signals]),
        p99_ms=worst([s.p99_ms for s in signals]),
        client_errors=sum(s.client_errors for s in signals),
        connections=sum(s.connections for s in signals),
        bytes_sent=sum(s.bytes_sent for s in signals),
        bytes_received=sum(s.bytes_received for s in signals),
    )


class TrafficCollector:
    """``sidemesh_requests_total`` and ``sidemesh_request_duration_milliseconds`` per
    edge, as the callers' Envoys counted them at the last scrape (Prometheus takes
    rates itself), and the scrapes' own health."""

    def __init__(self, scraper: Scraper) -> None:
        self.scraper = scraper

    def collect(self) -> Iterator[Metric]:
        labels = ["source_workload", "source_service", "destination_service"]
        requests = CounterMetricFamily(
            "sidemesh_requests",
            "Requests each workload sent each destination, by response class",
            labels=[*labels, "response_code_class"],
        )
        durations = HistogramMetricFamily(
            "sidemesh_request_duration_milliseconds",
            "Request duration as the caller's sidecar saw it",
            labels=labels,
        )
        for edge, traffic in sorted(self.scraper.signals.latest.items()):
            values = [str(edge.source), edge.source_service, edge.destination]
            for kind, count in sorted(traffic.by_class.items()):
                requests.add_metric([*values, kind], count)
            if traffic.latency_buckets:
                buckets = [(_bound(b), float(n)) for b, n in traffic.latency_buckets]
                total = traffic.latency_buckets[-1][1]
                buckets.append(("+Inf", float(max(total, traffic.requests))))
                durations.add_metric(values, buckets, sum_value=math.nan)
        yield requests
        yield durations
        yield from _connection_counters(self.scraper, labels)
        scrapes = CounterMetricFamily(
            "sidemesh_telemetry_scrapes", "Rounds of scraping every proxy's stats"
        )
        scrapes.add_metric([], self.scraper.scrapes)
        yield scrapes
        errors = CounterMetricFamily(
            "sidemesh_telemetry_scrape_errors",
            "Proxies that did not answer a scrape (stuck, gone, or not on this host)",
        )
        errors.add_metric([], self.scraper.errors)
        yield errors


def _bound(value: float) -> str:
    return f"{value:g}"


def _connection_counters(scraper: Scraper, labels: list[str]) -> Iterator[Metric]:
    """Per edge: connections opened and bytes each way, as the caller's Envoy counted
    them (for a TCP service the only measure of its traffic)."""
    families = {
        "connections": CounterMetricFamily(
            "sidemesh_tcp_connections_opened",
            "Connections each workload opened to each destination",
            labels=labels,
        ),
        "bytes_sent": CounterMetricFamily(
            "sidemesh_tcp_sent_bytes", "Bytes each workload sent each destination", labels=labels
        ),
        "bytes_received": CounterMetricFamily(
            "sidemesh_tcp_received_bytes",
            "Bytes each workload received from each destination",
            labels=labels,
        ),
    }
    for edge, traffic in sorted(scraper.signals.latest.items()):
        values = [str(edge.source), edge.source_service, edge.destination]
        for counter, family in families.items():
            family.add_metric(values, getattr(traffic, counter))
    yield from families.values()
