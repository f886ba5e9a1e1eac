"""``/v1/traces``: the typed shapes of the trace store's answers (OpenAPI documents
them), read by ``sidemesh traces``, ``sidemesh trace`` and the dashboard."""

from __future__ import annotations

from sidemesh.api.response import ApiModel


class TraceSummary(ApiModel):
    trace_id: str
    root_service: str
    root_name: str
    start_time_unix_nano: int
    duration_ms: float
    spans: int
    services: list[str]
    error: bool


class TraceList(ApiModel):
    traces: list[TraceSummary]
    """Failed first, then the slowest."""
    kept: int
    spans_received: int


class SpanOut(ApiModel):
    span_id: str
    parent_span_id: str | None
    name: str
    service: str
    workload: str | None
    kind: str
    """``server`` where a request came into a workload, ``client`` where it left one."""
    start_time_unix_nano: int
    duration_ms: float
    status_code: int | None
    error: bool
    attributes: dict[str, str]
    """Envoy's tags."""


class TraceOut(ApiModel):
    trace_id: str
    root_service: str
    root_name: str
    start_time_unix_nano: int
    duration_ms: float
    services: list[str]
    error: bool
    spans: list[SpanOut]
