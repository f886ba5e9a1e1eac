"""``create_app``: the HTTP API over a read-only view of the control plane."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException, Query, Response
from google.protobuf import json_format
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from sidemesh.api.dashboard import dashboard_router
from sidemesh.api.endpoints import EndpointsResponse, endpoints_response
from sidemesh.api.local import LocalRunOut
from sidemesh.api.proxies import ProxiesOut, ProxyConfigOut, SentResourceOut
from sidemesh.api.state import SourceOut, StateOut
from sidemesh.api.traces import TraceList, TraceOut, TraceSummary
from sidemesh.api.traffic import (
    GraphOut,
    StatsOut,
    TrafficCollector,
    graph_response,
    stats_response,
)
from sidemesh.envoy import ProxyId, ResourceType
from sidemesh.identity.service import SigningService
from sidemesh.identity.tokens import WorkloadRef
from sidemesh.model import MeshState
from sidemesh.sources import FileSource
from sidemesh.telemetry import ADMIN_TIMEOUT_S, Scraper, TraceStore
from sidemesh.telemetry.traces import MAX_TRACES
from sidemesh.xds import Publisher, StatusBoard
from sidemesh.xds.metrics import XdsCollector

Answer = TypeVar("Answer")


@dataclass(frozen=True)
class ApiView:
    """What the API may read."""

    publisher: Publisher
    status: StatusBoard
    source: FileSource | None = None
    signing: SigningService | None = None
    local_status: Callable[[], dict[str, Any]] | None = None
    """Local mode: the processes ``sidemesh up`` runs (``workloads``, ``controlPlane``)."""
    admin_timeout_s: float = ADMIN_TIMEOUT_S
    """How long ``/v1/endpoints`` waits for each proxy's Envoy admin."""
    telemetry: Scraper | None = None
    """The golden signals of ``/v1/stats``, ``/v1/graph`` and ``/metrics``."""
    traces: TraceStore | None = None
    """Recent traces, for ``/v1/traces``."""


def create_app(view: ApiView) -> FastAPI:
    # Handlers are async so they run on the control plane's event loop, the only
    # thread that changes what they read.
    app = FastAPI(
        title="sidemesh control plane",
        description="Mesh state and the proxies the control plane feeds.",
        version="1",
    )

    def windowed(answer: Callable[[Scraper, MeshState, str], Answer], window: str) -> Answer:
        if view.telemetry is None:
            raise HTTPException(404, "telemetry is off (controlplane --telemetry-interval 0)")
        try:
            return answer(view.telemetry, view.publisher.state, window)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc

    @app.get(
        "/v1/stats",
        response_model=StatsOut,
        response_model_by_alias=True,
        summary="Golden signals per service and per calling workload over a window",
    )
    async def stats(window: str = "1m") -> StatsOut:
        return windowed(stats_response, window)

    @app.get(
        "/v1/graph",
        response_model=GraphOut,
        response_model_by_alias=True,
        summary="The service graph: who calls whom, with golden signals",
    )
    async def graph(window: str = "1m") -> GraphOut:
        return windowed(graph_response, window)

    @app.get(
        "/v1/traces",
        response_model=TraceList,
        response_model_by_alias=True,
        summary="Recent traces, failed first, then the slowest (the spans proxies sent)",
    )
    async def traces(
        limit: int = Query(20, ge=1, le=1000),
        service: str | None = None,
        errors: bool = False,
    ) -> TraceList:
        store = view.traces or TraceStore()
        return TraceList(
            traces=[
                TraceSummary.model_validate(t.summary())
                for t in store.recent(limit, service, errors)
            ],
            kept=len(store),
            spans_received=store.spans_received,
        )

    @app.get(
        "/v1/traces/{trace_id}",
        response_model=TraceOut,
        response_model_by_alias=True,
        summary="One trace: every span that has arrived",
    )
    async def trace(trace_id: str) -> TraceOut:
        found = view.traces.get(trace_id) if view.traces is not None else None
        if found is None:
            raise HTTPException(
                404,
                f"no trace {trace_id} (kept: the {MAX_TRACES} most recent; see GET /v1/traces)",
            )
        return TraceOut.model_validate(found.to_json())

    @app.get("/healthz", summary="Liveness: the control plane is up and serving xDS")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "meshVersion": view.publisher.state.version}

    @app.get(
        "/v1/state",
        response_model=StateOut,
        response_model_by_alias=True,
        # A document's empty fields are left out, and so is the source of a state
        # that comes from no file.
        response_model_exclude_unset=True,
        summary="The current mesh state (services, workloads, identities)",
    )
    async def state() -> StateOut:
        source = None
        if view.source is not None:
            source = SourceOut(
                file=str(view.source.path),
                rejected_edits=view.source.rejected,
                last_error=str(view.source.last_error) if view.source.last_error else None,
            )
        return StateOut.of(view.publisher.state, source)

    @app.get(
        "/v1/proxies",
        response_model=ProxiesOut,
        response_model_by_alias=True,
        summary="Connected proxies: xDS mode, sent and ACKed version per type, last NACK",
    )
    async def proxies() -> ProxiesOut:
        listed = view.status.to_json()
        for proxy in listed:
            proxy["certificate"] = _certificate_json(view, proxy["node"])
        return ProxiesOut.model_validate(
            {"meshVersion": view.publisher.state.version, "proxies": listed}
        )

    @app.get(
        "/v1/endpoints",
        response_model=EndpointsResponse,
        response_model_by_alias=True,
        summary="How the callers' Envoys see each endpoint and workload: ejected by "
        "outlier detection, failing active health checks",
    )
    async def endpoints() -> EndpointsResponse:
        # Asked of the proxies now, not cached: an ejection lasts seconds.
        return await endpoints_response(view.publisher.state, view.status, view.admin_timeout_s)

    @app.get(
        "/v1/local/workloads",
        response_model=LocalRunOut,
        response_model_by_alias=True,
        # Before the supervisor has written its status, there is no supervisor pid.
        response_model_exclude_unset=True,
        summary="Local mode: each workload's app and sidecar processes (state, restarts)",
    )
    async def local_workloads() -> LocalRunOut:
        if view.local_status is None:
            raise HTTPException(404, "this control plane does not run workloads (not local mode)")
        return LocalRunOut.model_validate(view.local_status())

    @app.get(
        "/v1/proxies/{node}/config",
        response_model=ProxyConfigOut,
        response_model_by_alias=True,
        summary="What the control plane sends one proxy, by type and name",
    )
    async def proxy_config(node: str) -> ProxyConfigOut:
        snapshot = view.publisher.cache.get(node)
        if snapshot is None:
            raise HTTPException(404, f"no config for proxy {node!r} (is it connected?)")
        return ProxyConfigOut(
            node=node,
            state_version=snapshot.state_version,
            types={
                rtype.short: {
                    name: SentResourceOut(
                        version=res.version,
                        config=json_format.MessageToDict(
                            res.message, preserving_proto_field_name=True
                        ),
                    )
                    for name, res in sorted(snapshot.resources[rtype].items())
                }
                for rtype in ResourceType
            },
            services=(
                None
                if snapshot.resources.held is None
                else {str(k): str(r) for k, r in sorted(snapshot.resources.held.items())}
            ),
        )

    app.include_router(dashboard_router(view))

    registry = CollectorRegistry(auto_describe=True)
    registry.register(XdsCollector(view.status))
    registry.register(_MeshCollector(view))
    if view.telemetry is not None:
        registry.register(TrafficCollector(view.telemetry))

    @app.get("/metrics", summary="Prometheus metrics of the control plane")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _certificate_json(view: ApiView, node_id: str) -> dict[str, Any] | None:
    if view.signing is None:
        return None
    try:
        proxy = ProxyId.parse(node_id)
    except ValueError:
        return None
    issued = view.signing.issued.get(WorkloadRef(proxy.workload, proxy.namespace))
    if issued is None:
        return None
    return {
        "identity": issued.identity.uri,
        "serial": f"{issued.serial:x}",
        "notAfter": issued.not_after.isoformat(),
        "expiresInSeconds": round((issued.not_after - _now()).total_seconds(), 1),
    }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _MeshCollector(Collector):
    def __init__(self, view: ApiView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        state = self.view.publisher.state
        version = GaugeMetricFamily("sidemesh_mesh_version", "Version of the mesh state served")
        version.add_metric([], state.version)
        yield version
        converged = GaugeMetricFamily(
            "sidemesh_mesh_version_applied_proxies",
            "Connected proxies that have ACKed every config of the current mesh version "
            "(convergence: compare with sidemesh_xds_connected_proxies)",
        )
        converged.add_metric(
            [],
            sum(
                1
                for proxy in self.view.status.proxies.values()
                # Its stream answered from this version, and it ACKed all it was sent.
                if proxy.connected and proxy.synced and proxy.state_version >= state.version
            ),
        )
        yield converged
        services = GaugeMetricFamily("sidemesh_services", "Services in the mesh")
        services.add_metric([], len(state.services))
        yield services
        workloads = GaugeMetricFamily("sidemesh_workloads", "Workloads in the mesh")
        workloads.add_metric([], len(state.workloads))
        yield workloads
        if self.view.source is not None:
            rejected = CounterMetricFamily(
                "sidemesh_config_rejected", "Edits of mesh.yaml refused as invalid"
            )
            rejected.add_metric([], self.view.source.rejected)
            yield rejected
        signing = self.view.signing
        if signing is not None:
            issued = CounterMetricFamily(
                "sidemesh_certificates_issued", "Workload certificates signed"
            )
            issued.add_metric([], signing.issued_total)
            yield issued
            refused = CounterMetricFamily(
                "sidemesh_certificates_refused",
                "Certificate requests refused, by reason (token, workload, csr, malformed)",
                labels=["reason"],
            )
            for reason in ("token", "workload", "csr", "malformed"):
                refused.add_metric([reason], signing.refused[reason])
            yield refused
            expiry = GaugeMetricFamily(
                "sidemesh_certificate_expiry_seconds",
                "Seconds until each workload's newest certificate expires",
                labels=["workload", "namespace", "identity"],
            )
            now = _now()
            for ref, cert in sorted(signing.issued.items(), key=lambda kv: str(kv[0])):
                expiry.add_metric(
                    [ref.name, ref.namespace, cert.identity.uri],
                    (cert.not_after - now).total_seconds(),
                )
            yield expiry
        traces = self.view.traces
        if traces is not None:
            spans = CounterMetricFamily(
                "sidemesh_trace_spans_received", "Spans the proxies sent over OTLP"
            )
            spans.add_metric([], traces.spans_received)
            yield spans
            dropped = CounterMetricFamily(
                "sidemesh_trace_spans_dropped",
                "Spans not kept: their trace already held the most spans one may",
            )
            dropped.add_metric([], traces.spans_dropped)
            yield dropped
            kept = GaugeMetricFamily("sidemesh_traces_kept", "Recent traces held in memory")
            kept.add_metric([], len(traces))
            yield kept
