"""The dashboard's routes: its page and assets, the graph as SVG, what the page shows
beside it (typed models, so OpenAPI documents them) and a stream of server-sent events
that tells the page what changed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from sidemesh.api.dashboard.svg import Health, NodeView, health_of, render, worst
from sidemesh.api.response import ApiModel
from sidemesh.api.traffic import graph_response, window_seconds
from sidemesh.model import MeshState, ServiceKey
from sidemesh.model.policy import (
    AuthorizationPolicy,
    BackendPolicy,
    GRPCRoute,
    HTTPRoute,
    RequestAuthentication,
    Telemetry,
)
from sidemesh.model.policy.common import services_targeted
from sidemesh.model.policy.documents import describe
from sidemesh.telemetry.failures import span_reason
from sidemesh.telemetry.golden import Edge

if TYPE_CHECKING:
    from sidemesh.api.app import ApiView

STATIC = Path(__file__).parent / "static"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
"""The only files served from ``static/`` besides the page: nothing else on disk can be
asked for."""
EVENT_INTERVAL_S = 2.0
"""How often the page is told the mesh's state: the refresh interval of every view."""
CHANGE_POLL_S = 0.2
"""How soon a change (a new mesh version, a proxy's ACK or NACK) reaches the page."""
RECENT_FAILURES = 10
RECENT_CRASH_S = 60.0
"""A workload whose app or sidecar exited this recently counts as not running."""


class Rejection(ApiModel):
    node: str
    type: str
    detail: str
    """Envoy's own message."""


class Convergence(ApiModel):
    mesh_version: int
    applied: int
    """Connected proxies that have ACKed everything of this version."""
    connected: int
    rejected: list[Rejection]
    """Proxies whose last NACK is of a config sent for this version or later."""


class RefusedEdit(ApiModel):
    file: str
    error: str
    """The field path and the reason."""
    rejected_edits: int


class Overview(ApiModel):
    mesh_version: int
    convergence: Convergence
    refused_edit: RefusedEdit | None
    services: int
    workloads: int
    gateways: int
    telemetry: bool
    """Whether golden signals are scraped (``--telemetry-interval`` above 0)."""


class Point(ApiModel):
    at: float
    rps: float
    success_rate: float | None
    p99_ms: float | None


class FailedRequest(ApiModel):
    trace_id: str
    at_unix_nano: int
    service: str
    workload: str | None
    status: int | None
    url: str
    reason: str


class Detail(ApiModel):
    id: str
    series: list[Point]
    """Its signals between each two scrapes of the last 10 minutes."""
    routes: list[str]
    policies: list[str]
    failures: list[FailedRequest]
    """Its most recent failed requests among the traces kept, with why."""


def dashboard_router(view: ApiView) -> APIRouter:
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @router.get("/ui/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, f"no asset {name!r}")
        return FileResponse(STATIC / name, media_type=ASSETS[name])

    @router.get(
        "/v1/dashboard/overview",
        response_model=Overview,
        response_model_by_alias=True,
        summary="The mesh at a glance: version, its convergence, the last refused edit",
    )
    async def overview() -> Overview:
        return _overview(view)

    @router.get(
        "/v1/dashboard/graph.svg",
        summary="The service graph as SVG: nodes by health, edges with their signals; "
        "``by=workload``: each calling workload (its version) as a node of its own",
        response_class=Response,
    )
    async def graph_svg(window: str = "1m", by: str = "service") -> Response:
        if by not in ("service", "workload"):
            raise HTTPException(400, f"by={by!r}: service or workload")
        try:
            nodes, edges, denied = _graph(view, window)
            if by == "workload":
                nodes, edges = _by_workload(view, window, nodes, edges)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        return Response(render(nodes, edges, denied), media_type="image/svg+xml")

    @router.get(
        "/v1/dashboard/detail",
        response_model=Detail,
        response_model_by_alias=True,
        summary="A service (``node``) or an edge (``source`` and ``node``): its signals "
        "over 10 minutes, routes, policies, recent failed requests",
    )
    async def detail(node: str, source: str | None = None) -> Detail:
        return _detail(view, node, source)

    @router.get(
        "/v1/events",
        summary="Server-sent events: an ``overview`` at each change, and every 2 s",
    )
    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            sent, at = "", 0.0
            while not await request.is_disconnected():
                body = _overview(view).model_dump_json(by_alias=True)
                now = time.monotonic()
                # At once when anything changed (an edit, its convergence), else as a
                # heartbeat that refreshes the signals.
                if body != sent or now - at >= EVENT_INTERVAL_S:
                    yield f"event: overview\ndata: {body}\n\n"
                    sent, at = body, now
                await asyncio.sleep(CHANGE_POLL_S)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    return router


def _overview(view: ApiView) -> Overview:
    state = view.publisher.state
    connected = [p for p in view.status.proxies.values() if p.connected]
    applied = [p for p in connected if p.synced and p.state_version >= state.version]
    rejected = [
        Rejection(node=p.node_id, type=rtype.short, detail=t.last_nack.detail)
        for p in connected
        for rtype, t in p.types.items()
        if t.last_nack is not None and p.state_version >= state.version and not p.synced
    ]
    refused = None
    source = view.source
    if source is not None and source.last_error is not None:
        refused = RefusedEdit(
            file=str(source.path), error=str(source.last_error), rejected_edits=source.rejected
        )
    return Overview(
        mesh_version=state.version,
        convergence=Convergence(
            mesh_version=state.version,
            applied=len(applied),
            connected=len(connected),
            rejected=rejected,
        ),
        refused_edit=refused,
        services=len(state.services),
        workloads=len(state.workloads),
        gateways=len(state.gateways),
        telemetry=view.telemetry is not None,
    )


def _graph(
    view: ApiView, window: str
) -> tuple[list[NodeView], list[dict[str, Any]], set[tuple[str, str]]]:
    state = view.publisher.state
    seconds = window_seconds(window)
    if view.telemetry is not None:
        data = graph_response(view.telemetry, state, window).model_dump(by_alias=True)
        services = view.telemetry.signals.services(seconds)
    else:
        data = {"nodes": [{"id": str(k), "kind": "service"} for k in state.services], "edges": []}
        services = {}
    running = _running(view)
    nodes = []
    for node in data["nodes"]:
        signals = services.get(node["id"])
        traffic = health_of(signals.success_rate if signals else None)
        if node["kind"] == "gateway":  # nothing calls it in the mesh: how its calls fare
            outgoing = [
                health_of(e["successRate"]) for e in data["edges"] if e["source"] == node["id"]
            ]
            traffic = worst(*outgoing) if outgoing else traffic
        note, processes = _processes(state, node["id"], running)
        nodes.append(NodeView(node["id"], node["kind"], worst(traffic, processes), note))
    denied = {
        (e["source"], e["destination"])
        for e in data["edges"]
        if e["requests"]
        and e["clientErrors"] * 2 >= e["requests"]
        and _has_authorization(state, e["destination"])
    }
    return nodes, list(data["edges"]), denied


class _Process(NamedTuple):
    running: bool
    """Running and ready."""
    crashed: bool
    """Its app or sidecar exited within the last ``RECENT_CRASH_S``."""


def _by_workload(
    view: ApiView, window: str, services: list[NodeView], service_edges: list[dict[str, Any]]
) -> tuple[list[NodeView], list[dict[str, Any]]]:
    """The graph with each calling workload as a node (its version in its note), calling
    the services: which replica or version sends what."""
    if view.telemetry is None:
        return services, []
    state = view.publisher.state
    running = _running(view)
    edges = view.telemetry.signals.edges(window_seconds(window))
    nodes = {n.id: n for n in services}
    mtls = {e["destination"]: e["mtls"] for e in service_edges}
    out: list[dict[str, Any]] = []
    for edge, signals in sorted(edges.items()):
        source = str(edge.source)
        if source not in nodes:
            workload = state.workload(edge.source.name, edge.source.namespace)
            version = (workload.labels.get("version") if workload is not None else None) or ""
            process = (running or {}).get(edge.source.name)
            health = Health.IDLE
            if process is not None and (not process.running or process.crashed):
                health = Health.DEGRADED
            note = f"{edge.source_service.split('.')[0]} {version}".strip()
            nodes[source] = NodeView(source, "workload", health, note)
        out.append(
            {
                "source": source,
                "destination": edge.destination,
                "mtls": mtls.get(edge.destination, False),
                **signals.to_json(),
            }
        )
    # Each service joined to its workloads that call out: the path reads on through them.
    members = [
        {"source": e["source_service"], "destination": e["source"], "member": True}
        for e in (
            {"source": str(edge.source), "source_service": edge.source_service} for edge in edges
        )
        if e["source_service"] in nodes and e["source_service"] != e["source"]
    ]
    unique = {(m["source"], m["destination"]): m for m in members}
    return list(nodes.values()), [*unique.values(), *out]


def _running(view: ApiView) -> dict[str, _Process] | None:
    """Local mode: each workload (and gateway) by name, whether it runs and whether it
    just crashed (restarted at once, a crash would otherwise be gone from the page
    before anyone saw it)."""
    if view.local_status is None:
        return None
    found = {}
    now = time.time()
    for w in view.local_status().get("workloads", []):
        app = w.get("app") or {"state": "running"}
        crashed = any(
            p and p.get("lastExitAt") and now - p["lastExitAt"] < RECENT_CRASH_S
            for p in (w.get("app"), w.get("sidecar"))
        )
        running = bool(w.get("ready")) and app.get("state") == "running"
        found[w["name"]] = _Process(running, crashed)
    return found


def _processes(
    state: MeshState, node: str, running: dict[str, _Process] | None
) -> tuple[str, Health]:
    """A service's workloads, as a note and a health: all running (or no word of
    processes, outside local mode) is healthy; some not running, or one that just
    crashed, is degraded; none running is failing."""
    name, _, namespace = node.partition(".")
    key = ServiceKey(name, namespace)
    if key not in state.services:
        return "", Health.IDLE
    members = [w.name for w in state.workloads_of(key)]
    if running is None or not members:
        return f"{len(members)} workloads", Health.IDLE
    found = [running.get(m, _Process(False, False)) for m in members]
    up = sum(1 for p in found if p.running)
    crashed = sum(1 for p in found if p.crashed)
    note = f"{up}/{len(members)} running" + (f", {crashed} just crashed" if crashed else "")
    if up == 0:
        return note, Health.FAILING
    return note, Health.DEGRADED if up < len(members) or crashed else Health.IDLE


def _has_authorization(state: MeshState, destination: str) -> bool:
    name, _, namespace = destination.partition(".")
    key = ServiceKey(name, namespace)
    return any(
        services_targeted(p.metadata, p.spec.target_refs, [key])
        for p in state.policies.authorization_policies
    )


def _detail(view: ApiView, node: str, source: str | None) -> Detail:
    state = view.publisher.state
    name, _, namespace = node.partition(".")
    key = ServiceKey(name, namespace)

    calling_workload = key not in state.services and state.workload(name, namespace) is not None

    def wanted(edge: Edge) -> bool:
        if calling_workload:  # a workload's node: what it sends
            return str(edge.source) == node
        return edge.destination == node and (source is None or edge.source_service == source)

    series = []
    if view.telemetry is not None:
        series = [
            Point(at=at, rps=round(s.rps, 3), success_rate=s.success_rate, p99_ms=s.p99_ms)
            for at, s in view.telemetry.signals.history(wanted)
        ]
    routes = sorted(
        describe(r)
        for r in state.policies
        if isinstance(r, HTTPRoute | GRPCRoute)
        and any(
            p.is_service and p.name == name and (p.namespace or r.metadata.namespace) == namespace
            for p in r.spec.parent_refs
        )
    )
    policies = sorted(
        describe(p)
        for p in state.policies
        if isinstance(p, AuthorizationPolicy | RequestAuthentication | BackendPolicy | Telemetry)
        and services_targeted(p.metadata, p.spec.target_refs, [key])
    )
    return Detail(
        id=node if source is None else f"{source} → {node}",
        series=series,
        routes=routes,
        policies=policies,
        failures=_failures(view, name, source),
    )


def _failures(view: ApiView, service: str, source: str | None) -> list[FailedRequest]:
    """The failed server spans of ``service`` (called by ``source``'s workloads, if
    given) in the traces kept, newest first."""
    if view.traces is None:
        return []
    found = []
    for trace in view.traces.recent(limit=200, service=service.split(".")[0], errors_only=True):
        by_id = {s.span_id: s for s in trace.spans}
        for span in trace.spans:
            if span.service != service.split(".")[0] or span.kind != "server" or not span.error:
                continue
            parent = by_id.get(span.parent_span_id or "")
            if source is not None and (parent is None or parent.service != source.split(".")[0]):
                continue
            found.append(
                FailedRequest(
                    trace_id=span.trace_id,
                    at_unix_nano=span.start_ns,
                    service=span.service,
                    workload=span.workload,
                    status=span.status_code,
                    url=span.attributes.get("http.url", ""),
                    reason=span_reason(span.attributes),
                )
            )
    found.sort(key=lambda f: -f.at_unix_nano)
    return found[:RECENT_FAILURES]
