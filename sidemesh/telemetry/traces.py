"""Recent traces, from the spans the proxies send the control plane over OTLP.

Bounded: at most ``max_traces`` traces (the least recently added-to goes first) of at
most ``max_spans`` spans each, so a burst of traffic at 100% sampling costs the control
plane a fixed amount of memory, never one that grows with the load. A trace is
whatever spans of one trace ID have arrived: proxies export on their own schedules, so
a trace fills in over a few seconds."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

MAX_TRACES = 2000
MAX_SPANS_PER_TRACE = 500
SERVER_ERROR_FROM = 500

_KINDS = {
    trace_pb2.Span.SPAN_KIND_SERVER: "server",
    trace_pb2.Span.SPAN_KIND_CLIENT: "client",
    trace_pb2.Span.SPAN_KIND_INTERNAL: "internal",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "producer",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "consumer",
}


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    service: str
    """``service.name`` of the proxy that made it: the service it stands for."""
    kind: str
    """``server`` where a request came into a workload, ``client`` where it left one."""
    start_ns: int
    end_ns: int
    attributes: dict[str, str]
    """Envoy's tags: ``node_id``, ``http.method``, ``http.url``, ``http.status_code``,
    ``upstream_cluster``, ``response_flags``, ``peer.address``..."""
    error: bool

    @property
    def duration_ms(self) -> float:
        return max(self.end_ns - self.start_ns, 0) / 1e6

    @property
    def status_code(self) -> int | None:
        code = self.attributes.get("http.status_code", "")
        return int(code) if code.isdigit() else None

    @property
    def workload(self) -> str | None:
        """The proxy's workload, from its node ID ``sidecar~<workload>~<namespace>``."""
        parts = self.attributes.get("node_id", "").split("~")
        return parts[1] if len(parts) == 3 else None

    def to_json(self) -> dict[str, Any]:
        return {
            "spanId": self.span_id,
            "parentSpanId": self.parent_span_id,
            "name": self.name,
            "service": self.service,
            "workload": self.workload,
            "kind": self.kind,
            "startTimeUnixNano": self.start_ns,
            "durationMs": round(self.duration_ms, 3),
            "statusCode": self.status_code,
            "error": self.error,
            "attributes": self.attributes,
        }


@dataclass
class Trace:
    trace_id: str
    spans: list[Span] = field(default_factory=list)

    @property
    def root(self) -> Span:
        """The span whose parent is not in the trace (the first proxy's), earliest
        first if several are (the rest has not arrived yet)."""
        ids = {s.span_id for s in self.spans}
        orphans = [s for s in self.spans if s.parent_span_id not in ids]
        return min(orphans or self.spans, key=lambda s: s.start_ns)

    @property
    def start_ns(self) -> int:
        return min(s.start_ns for s in self.spans)

    @property
    def duration_ms(self) -> float:
        return (max(s.end_ns for s in self.spans) - self.start_ns) / 1e6

    @property
    def error(self) -> bool:
        return any(s.error for s in self.spans)

    @property
    def services(self) -> list[str]:
        return sorted({s.service for s in self.spans})

    def summary(self) -> dict[str, Any]:
        root = self.root
        return {
            "traceId": self.trace_id,
            "rootService": root.service,
            "rootName": root.name,
            "startTimeUnixNano": self.start_ns,
            "durationMs": round(self.duration_ms, 3),
            "spans": len(self.spans),
            "services": self.services,
            "error": self.error,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "spans": [s.to_json() for s in sorted(self.spans, key=lambda s: s.start_ns)],
        }


class TraceStore:
    """The most recent traces, by trace ID."""

    def __init__(self, max_traces: int = MAX_TRACES, max_spans: int = MAX_SPANS_PER_TRACE) -> None:
        self.max_traces = max_traces
        self.max_spans = max_spans
        self._traces: OrderedDict[str, Trace] = OrderedDict()
        self.spans_received = 0
        self.spans_dropped = 0
        """Spans over a trace's limit, not kept."""
        self.traces_evicted = 0

    def add(self, spans: Iterable[Span]) -> None:
        for span in spans:
            self.spans_received += 1
            trace = self._traces.get(span.trace_id)
            if trace is None:
                trace = self._traces[span.trace_id] = Trace(span.trace_id)
            else:
                self._traces.move_to_end(span.trace_id)
            if len(trace.spans) >= self.max_spans:
                self.spans_dropped += 1
                continue
            trace.spans.append(span)
        while len(self._traces) > self.max_traces:
            self._traces.popitem(last=False)
            self.traces_evicted += 1

    def __len__(self) -> int:
        return len(self._traces)

    def get(self, trace_id: str) -> Trace | None:
        return self._traces.get(trace_id.lower())

    def recent(
        self, limit: int = 20, service: str | None = None, errors_only: bool = False
    ) -> list[Trace]:
        """Failed traces first, then the slowest: the ones an operator looks for."""
        found = [
            t
            for t in self._traces.values()
            if (service is None or service in t.services) and (t.error or not errors_only)
        ]
        found.sort(key=lambda t: (not t.error, -t.duration_ms))
        return found[:limit]


def spans_of(request: trace_service_pb2.ExportTraceServiceRequest) -> Iterator[Span]:
    """The spans of one OTLP export, each with its resource's ``service.name``."""
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        service = resource.get("service.name", "unknown")
        for scope_spans in _scopes(resource_spans):
            for span in scope_spans.spans:
                attributes = _attributes(span.attributes)
                status = attributes.get("http.status_code", "")
                yield Span(
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex() or None,
                    name=span.name,
                    service=service,
                    kind=_KINDS.get(span.kind, "unspecified"),
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    attributes=attributes,
                    error=span.status.code == trace_pb2.Status.STATUS_CODE_ERROR
                    or attributes.get("error") == "true"
                    or (status.isdigit() and int(status) >= SERVER_ERROR_FROM),
                )


def _scopes(resource_spans: trace_pb2.ResourceSpans) -> Iterable[Any]:
    """The spans of a resource, by instrumentation scope. The OpenTelemetry protocol
    names that field ``scope_spans`` since 0.15 and ``instrumentation_library_spans``
    before; both are field 2 with the same layout, so either reads what Envoy sends, and
    this works with whichever copy of the protocol the environment has (the one Envoy's
    API packages ship is the older)."""
    scopes = getattr(resource_spans, "scope_spans", None)
    if scopes is None:
        scopes = resource_spans.instrumentation_library_spans
    return scopes  # type: ignore[no-any-return]


def _attributes(pairs: Iterable[common_pb2.KeyValue]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        value = pair.value
        which = value.WhichOneof("value")
        out[pair.key] = "" if which is None else str(getattr(value, which))
    return out
