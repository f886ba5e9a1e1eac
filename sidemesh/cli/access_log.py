"""The sidecars' access-log lines (JSON, one per failed request, or per request where a
Telemetry asks) in plain words: what Envoy's response flags and details mean for the
request, so a 503 says why."""

from __future__ import annotations

import json
from typing import Any

from sidemesh.telemetry.failures import reason


def entry_of(line: str) -> dict[str, Any] | None:
    """The access-log entry ``line`` holds, if it is one."""
    start = line.find("{")
    if start < 0 or '"log"' not in line:
        return None
    try:
        entry = json.loads(line[start:])
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("log") != "access":
        return None
    return entry


def render(line: str) -> str:
    """``line`` in words if it is an access-log entry, else as it is."""
    entry = entry_of(line)
    return line if entry is None else in_words(entry)


def render_access_only(line: str) -> str | None:
    """Access-log entries in words; every other line left out."""
    entry = entry_of(line)
    return None if entry is None else in_words(entry)


def raw_access_only(line: str) -> str | None:
    return None if entry_of(line) is None else line


def in_words(entry: dict[str, Any]) -> str:
    peer = entry.get("peer")
    caller = f" from {peer}" if _given(peer) else ""
    trace = f" (trace {entry['traceId']})" if _given(entry.get("traceId")) else ""
    head = (
        f"{entry.get('time')} {entry.get('status')} {entry.get('method')} "
        f"{entry.get('authority')}{entry.get('path')}{caller}"
    )
    if _succeeded(entry):
        by = entry.get("upstreamPeer") if _given(entry.get("upstreamPeer")) else None
        by = by or entry.get("upstream")
        served = f" by {by}" if _given(by) else ""
        return f"{head}: {entry.get('durationMs')} ms{served}{trace}"
    return f"{head}: {reason(entry)}{trace}"


def _given(value: Any) -> bool:
    return value not in (None, "-", "")


def _succeeded(entry: dict[str, Any]) -> bool:
    """Answered below 400 with no flag of Envoy's own (logged only when a Telemetry
    asks for every request)."""
    status = str(entry.get("status") or "")
    flags = str(entry.get("responseFlags") or "-")
    return status.isdigit() and int(status) < 400 and flags == "-"
