"""The service graph drawn as SVG on the server: the page shows it as it comes, with no
graph library in the browser. Nodes are coloured by health, edges labelled with their
requests/s, success rate and p99, a lock on mTLS edges, dashed where policy refuses
most of what is sent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from html import escape
from typing import Any

from sidemesh.api.dashboard.layout import NODE_HEIGHT, NODE_WIDTH, Placed, layered, size

LEGEND_HEIGHT = 34


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILING = "failing"
    IDLE = "idle"
    """No traffic in the window, and every workload running."""


HEALTHY_FROM = 0.99
"""Success rate at or above which a service (or edge) is green."""
DEGRADED_FROM = 0.95
"""At or above which it is amber; below, red."""

COLOURS = {
    Health.HEALTHY: "#2e9e44",
    Health.DEGRADED: "#e0a100",
    Health.FAILING: "#d0342c",
    Health.IDLE: "#8c959f",
}


def health_of(success_rate: float | None) -> Health:
    if success_rate is None:
        return Health.IDLE
    if success_rate >= HEALTHY_FROM:
        return Health.HEALTHY
    return Health.DEGRADED if success_rate >= DEGRADED_FROM else Health.FAILING


def worst(*found: Health) -> Health:
    order = [Health.FAILING, Health.DEGRADED, Health.HEALTHY, Health.IDLE]
    return min(found, key=order.index) if found else Health.IDLE


@dataclass(frozen=True)
class NodeView:
    id: str
    kind: str
    """``service``, ``gateway`` or ``external``."""
    health: Health
    note: str = ""
    """A second line: workloads running, or why it is not green."""


def render(nodes: list[NodeView], edges: list[dict[str, Any]], denied: set[tuple[str, str]]) -> str:
    placed = layered([n.id for n in nodes], [(e["source"], e["destination"]) for e in edges])
    width, height = size(placed)
    height += LEGEND_HEIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" class="graph" role="img" '
        'aria-label="service graph">',
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7' "
        "markerHeight='7' orient='auto-start-reverse'><path d='M 0 0 L 10 5 L 0 10 z' "
        "fill='#57606a'/></marker></defs>",
        _legend(),
        f'<g transform="translate(0,{LEGEND_HEIGHT})">',
    ]
    parts += [_edge(e, placed, (e["source"], e["destination"]) in denied) for e in edges]
    parts += [_node(n, placed[n.id]) for n in nodes]
    parts.append("</g></svg>")
    return "".join(parts)


def _legend() -> str:
    items = [
        (Health.HEALTHY, f"success ≥ {HEALTHY_FROM:.0%}"),
        (Health.DEGRADED, f"≥ {DEGRADED_FROM:.0%}"),
        (Health.FAILING, f"< {DEGRADED_FROM:.0%}"),
        (Health.IDLE, "no traffic"),
    ]
    out = ['<g class="legend" font-size="12" font-family="sans-serif">']
    x = 10
    for health, label in items:
        out.append(
            f'<rect x="{x}" y="10" width="12" height="12" rx="3" fill="{COLOURS[health]}"/>'
            f'<text x="{x + 17}" y="20" fill="#24292f">{escape(label)}</text>'
        )
        x += 26 + 7 * len(label)
    out.append(
        f'{_lock(x, 9)}<text x="{x + 14}" y="20" fill="#24292f">mTLS · dashed: refused by '
        "policy</text></g>"
    )
    return "".join(out)


def _node(node: NodeView, at: Placed) -> str:
    colour = COLOURS[node.health]
    label = node.id.removesuffix(".default") if node.kind != "external" else node.id
    shape_rx = 22 if node.kind == "gateway" else 3 if node.kind == "external" else 8
    note = (
        f'<text x="{at.x + 12}" y="{at.y + 35}" font-size="11" fill="#57606a">'
        f"{escape(node.note)}</text>"
        if node.note
        else ""
    )
    return (
        f'<g class="node" data-id="{escape(node.id)}" data-kind="{node.kind}" '
        f'data-health="{node.health.value}" tabindex="0">'
        f"<title>{escape(node.id)}: {node.health.value}</title>"
        f'<rect x="{at.x}" y="{at.y}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" '
        f'rx="{shape_rx}" fill="#ffffff" stroke="{colour}" stroke-width="3"/>'
        f'<circle cx="{at.x + NODE_WIDTH - 14}" cy="{at.y + 14}" r="5" fill="{colour}"/>'
        f'<text x="{at.x + 12}" y="{at.y + 19}" font-size="13" font-weight="600" '
        f'font-family="sans-serif" fill="#24292f">{escape(label)}</text>{note}</g>'
    )


def _edge(edge: Mapping[str, Any], placed: dict[str, Placed], denied: bool) -> str:
    a, b = placed[edge["source"]], placed[edge["destination"]]
    x1, y1 = a.x + NODE_WIDTH, a.y + NODE_HEIGHT / 2
    x2, y2 = b.x, b.y + NODE_HEIGHT / 2
    if b.layer <= a.layer:  # a call back (a cycle) or within a column: go around below
        x2, y2 = b.x + NODE_WIDTH / 2, b.y + NODE_HEIGHT
    bend = max(abs(x2 - x1) / 2, 40)
    if edge.get("member"):  # a service and one of its workloads: no traffic of its own
        return (
            f'<g class="member" data-source="{escape(edge["source"])}" '
            f'data-destination="{escape(edge["destination"])}">'
            f'<path d="M {x1} {y1} C {x1 + bend} {y1}, {x2 - bend} {y2}, {x2} {y2}" '
            'fill="none" stroke="#8c959f" stroke-width="1" stroke-dasharray="2 3"/></g>'
        )
    colour = COLOURS[health_of(edge.get("successRate"))]
    dash = ' stroke-dasharray="6 5"' if denied else ""
    label = _edge_label(edge)
    mid_x, mid_y = (x1 + x2) / 2, (y1 + y2) / 2 - 6
    mtls = bool(edge.get("mtls"))
    lock = _lock(mid_x - 2.8 * len(label) - 14, mid_y - 9) if mtls else ""
    return (
        f'<g class="edge" data-source="{escape(edge["source"])}" '
        f'data-destination="{escape(edge["destination"])}" '
        f'data-mtls="{str(bool(edge.get("mtls"))).lower()}" '
        f'data-denied="{str(denied).lower()}" tabindex="0">'
        f'<path d="M {x1} {y1} C {x1 + bend} {y1}, {x2 - bend} {y2}, {x2} {y2}" fill="none" '
        f'stroke="{colour}" stroke-width="2"{dash} marker-end="url(#arrow)"/>'
        f'<text x="{mid_x}" y="{mid_y}" text-anchor="middle" font-size="11" '
        f'font-family="sans-serif" fill="#24292f" class="edge-label" '
        f'paint-order="stroke" stroke="#ffffff" stroke-width="4">{escape(label)}</text>{lock}</g>'
    )


def _lock(x: float, y: float) -> str:
    """A padlock drawn in SVG (no font has to have the glyph)."""
    return (
        f'<g class="lock" transform="translate({x:.1f},{y:.1f})">'
        '<rect x="0" y="4" width="9" height="7" rx="1" fill="#57606a"/>'
        '<path d="M 2 4 V 2.5 a 2.5 2.5 0 0 1 5 0 V 4" fill="none" stroke="#57606a" '
        'stroke-width="1.4"/></g>'
    )


def _edge_label(edge: Mapping[str, Any]) -> str:
    rps = f"{edge.get('rps', 0):.1f} rps"
    rate = edge.get("successRate")
    success = "-" if rate is None else f"{rate * 100:.1f}%"
    p99 = edge.get("p99Ms")
    latency = "" if p99 is None else f" · p99 {p99:.0f}ms"
    return f"{rps} · {success}{latency}"
