"""A layered layout of the service graph: callers left of callees, so a request reads
left to right (the gateway first), and few edges cross.

Layers: a node's layer is the longest chain of calls that reaches it (edges that would
close a cycle are left out of that count). Within a layer, nodes are ordered by the
mean position of their callers, then of their callees (a few sweeps of the barycenter
heuristic), which untangles most graphs of services. Nodes without any call (yet) are
set in rows of their own below, so the graph of calls stays compact."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

COLUMN_WIDTH = 340
ROW_HEIGHT = 84
MARGIN = 30
NODE_WIDTH = 170
NODE_HEIGHT = 44
SWEEPS = 4


@dataclass(frozen=True)
class Placed:
    id: str
    x: float
    y: float
    layer: int


def layered(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> dict[str, Placed]:
    known = set(nodes)
    calls = sorted({(a, b) for a, b in edges if a in known and b in known and a != b})
    callees: dict[str, list[str]] = {n: [] for n in nodes}
    callers: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in _without_cycles(nodes, calls):
        callees[a].append(b)
        callers[b].append(a)
    connected = {n for edge in calls for n in edge}
    layer: dict[str, int] = {}

    def depth(node: str) -> int:
        if node not in layer:
            layer[node] = 1 + max((depth(c) for c in callers[node]), default=-1)
        return layer[node]

    for node in nodes:
        if node in connected:
            depth(node)
    columns: dict[int, list[str]] = {}
    for node in sorted(layer):
        columns.setdefault(layer[node], []).append(node)
    _order(columns, callers, callees)
    placed = {
        node: Placed(node, MARGIN + index * COLUMN_WIDTH, MARGIN + row * ROW_HEIGHT, index)
        for index, column in sorted(columns.items())
        for row, node in enumerate(column)
    }
    idle = sorted(n for n in nodes if n not in layer)
    per_row = max(len(columns), 1) if columns else 4
    top = MARGIN + max((len(c) for c in columns.values()), default=0) * ROW_HEIGHT
    for i, node in enumerate(idle):
        row, column = divmod(i, per_row)
        placed[node] = Placed(node, MARGIN + column * COLUMN_WIDTH, top + row * ROW_HEIGHT, -1)
    return placed


def size(placed: dict[str, Placed]) -> tuple[int, int]:
    """Width and height that hold every node."""
    width = max((p.x for p in placed.values()), default=0) + NODE_WIDTH + 2 * MARGIN
    height = max((p.y for p in placed.values()), default=0) + NODE_HEIGHT + 2 * MARGIN
    return int(width), int(height)


def _without_cycles(nodes: Sequence[str], calls: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The calls minus those that point back to a node on the current depth-first path."""
    out: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in calls:
        out[a].append(b)
    kept: list[tuple[str, str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str) -> None:
        state[node] = 1
        for nxt in out[node]:
            if state.get(nxt) == 1:
                continue  # a call back up the path: a cycle
            kept.append((node, nxt))
            if nxt not in state:
                visit(nxt)
        state[node] = 2

    for node in sorted(nodes):
        if node not in state:
            visit(node)
    return kept


def _order(
    columns: dict[int, list[str]], callers: dict[str, list[str]], callees: dict[str, list[str]]
) -> None:
    def position() -> dict[str, float]:
        return {n: float(i) for column in columns.values() for i, n in enumerate(column)}

    keys = sorted(columns)
    for sweep in range(SWEEPS):
        neighbours = callers if sweep % 2 == 0 else callees
        for key in keys if sweep % 2 == 0 else reversed(keys):
            at = position()

            def centre(
                node: str, at: dict[str, float] = at, neighbours: dict[str, list[str]] = neighbours
            ) -> float:
                linked = [at[n] for n in neighbours[node]]
                return sum(linked) / len(linked) if linked else at[node]

            columns[key].sort(key=lambda n: (centre(n), n))
