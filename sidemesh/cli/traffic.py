"""``sidemesh stat`` (one snapshot) and ``sidemesh top`` (live): the golden signals of
services, or of the edges between workloads and services, from ``/v1/stats``."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from sidemesh.cli.api_client import get_json


def gather(api: str, window: str, namespace: str | None, service: str | None) -> dict[str, Any]:
    data: dict[str, Any] = get_json(api, f"/v1/stats?window={window}")

    def wanted(name: str) -> bool:
        svc, _, ns = name.partition(".")
        return (namespace is None or ns == namespace) and (service is None or svc == service)

    data["services"] = [s for s in data["services"] if wanted(s["service"])]
    data["workloads"] = [w for w in data["workloads"] if wanted(w["destination"])]
    return data


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms" if value < 1000 else f"{value / 1000:.2f}s"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def table(data: dict[str, Any], edges: bool) -> Table:
    rows = data["workloads"] if edges else data["services"]
    rows = sorted(rows, key=lambda r: (-r["rps"], r.get("destination") or r["service"]))
    title = f"{'edges' if edges else 'services'}, last {data['window']}"
    if data.get("unanswered"):
        title += f" ({len(data['unanswered'])} proxies did not answer)"
    out = Table(title=title, title_justify="left")
    columns = ["from", "to"] if edges else ["service"]
    for column in (*columns, "rps", "success", "p50", "p95", "p99", "requests"):
        out.add_column(column, justify="left" if column in ("from", "to", "service") else "right")
    for row in rows:
        names = [row["source"], row["destination"]] if edges else [row["service"]]
        out.add_row(
            *names,
            f"{row['rps']:.1f}",
            _rate(row["successRate"]),
            _ms(row["p50Ms"]),
            _ms(row["p95Ms"]),
            _ms(row["p99Ms"]),
            str(row["requests"]),
        )
    if not rows:
        out.caption = "no traffic seen yet (signals need two scrapes, 5 s apart by default)"
    return out


def top(
    api: str,
    window: str,
    namespace: str | None,
    service: str | None,
    edges: bool,
    refresh_s: float,
    console: Console,
) -> None:
    """Refresh the table until interrupted."""
    with Live(console=console, auto_refresh=False, screen=False) as live:
        while True:
            data = gather(api, window, namespace, service)
            live.update(table(data, edges), refresh=True)
            time.sleep(refresh_s)
