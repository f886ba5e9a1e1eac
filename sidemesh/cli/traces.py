"""``sidemesh traces`` (recent traces, failed first, then the slowest) and ``sidemesh
trace ID`` (one trace as a waterfall: each span under its parent, a bar for when it
ran), from ``/v1/traces``."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.table import Table
from rich.text import Text

from sidemesh.cli.api_client import get, get_json

BAR_WIDTH = 40


class TraceNotFound(Exception):
    pass


def gather_list(api: str, limit: int, service: str | None, errors: bool) -> dict[str, Any]:
    query = f"/v1/traces?limit={limit}" + (f"&service={service}" if service else "")
    if errors:
        query += "&errors=true"
    answer: dict[str, Any] = get_json(api, query)
    return answer


def gather_one(api: str, trace_id: str) -> dict[str, Any]:
    response = get(api, f"/v1/traces/{trace_id}")
    if response.status_code == 404:
        raise TraceNotFound(response.json().get("detail", f"no trace {trace_id}"))
    response.raise_for_status()
    found: dict[str, Any] = response.json()
    return found


def _ms(value: float) -> str:
    return f"{value:.1f}ms" if value < 1000 else f"{value / 1000:.2f}s"


def _when(unix_ns: int) -> str:
    return dt.datetime.fromtimestamp(unix_ns / 1e9, dt.UTC).strftime("%H:%M:%S.%f")[:-3]


def list_table(data: dict[str, Any]) -> Table:
    out = Table(
        title=f"{len(data['traces'])} of {data['kept']} recent traces, failed first, "
        "then the slowest",
        title_justify="left",
    )
    for column in ("trace", "started (UTC)", "root", "duration", "spans", "services", ""):
        out.add_column(column, justify="right" if column in ("duration", "spans") else "left")
    for t in data["traces"]:
        out.add_row(
            t["traceId"],
            _when(t["startTimeUnixNano"]),
            f"{t['rootService']}: {t['rootName']}",
            _ms(t["durationMs"]),
            str(t["spans"]),
            ", ".join(t["services"]),
            Text("error", style="red") if t["error"] else "",
        )
    if not data["traces"]:
        out.caption = (
            "no traces yet: a sampled request makes one (mesh.tracing."
            "randomSamplingPercentage, or a Telemetry document, sets how many)"
        )
    return out


def waterfall(trace: dict[str, Any]) -> Table:
    spans = trace["spans"]
    start = trace["startTimeUnixNano"]
    total_ms = max(trace["durationMs"], 0.001)
    out = Table(
        title=f"trace {trace['traceId']}: {_ms(trace['durationMs'])}, {len(spans)} spans"
        + (" (failed)" if trace["error"] else ""),
        title_justify="left",
    )
    for column in ("span", "status", "duration", "timeline"):
        out.add_column(column, justify="right" if column == "duration" else "left")
    for depth, span in _tree_order(spans):
        offset_ms = (span["startTimeUnixNano"] - start) / 1e6
        begin = min(int(offset_ms / total_ms * BAR_WIDTH), BAR_WIDTH - 1)
        length = max(1, round(span["durationMs"] / total_ms * BAR_WIDTH))
        bar = " " * begin + "█" * min(length, BAR_WIDTH - begin)
        who = span["service"] + (f" ({span['workload']})" if span["workload"] else "")
        status = str(span["statusCode"] or "-")
        style = "red" if span["error"] else "green" if span["kind"] == "server" else "cyan"
        out.add_row(
            "  " * depth + f"{who} {span['kind']}: {span['name']}",
            Text(status, style="red") if span["error"] else status,
            _ms(span["durationMs"]),
            Text(bar, style=style),
        )
    out.caption = "server: where a request came into a workload; client: where it left one"
    return out


def _tree_order(spans: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """Each span after its parent, children by start time; spans whose parent has not
    arrived are roots."""
    ids = {s["spanId"] for s in spans}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for span in spans:
        parent = span["parentSpanId"] if span["parentSpanId"] in ids else None
        children.setdefault(parent, []).append(span)
    ordered: list[tuple[int, dict[str, Any]]] = []

    def visit(parent: str | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s["startTimeUnixNano"]):
            ordered.append((depth, span))
            visit(span["spanId"], depth + 1)

    visit(None, 0)
    return ordered
