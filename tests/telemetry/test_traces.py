"""The trace store and the OTLP trace service: spans sent by a real gRPC client over a
socket on 127.0.0.1, kept as traces, bounded, failed and slow ones first."""

from __future__ import annotations

import asyncio

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from sidemesh.telemetry import TraceStore, trace_service
from sidemesh.telemetry.otlp import TRACE_SERVICE
from sidemesh.telemetry.traces import spans_of

TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")


def _span(
    span_id: int, parent: int | None, start_ms: int, end_ms: int, tags: dict[str, str] | None = None
) -> trace_pb2.Span:
    return trace_pb2.Span(
        trace_id=TRACE,
        span_id=span_id.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name="reviews:9080/*",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start_ms * 1_000_000,
        end_time_unix_nano=end_ms * 1_000_000,
        attributes=[
            common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
            for k, v in (tags or {}).items()
        ],
    )


def _export(service: str, *spans: trace_pb2.Span) -> trace_service_pb2.ExportTraceServiceRequest:
    resource = resource_pb2.Resource(
        attributes=[
            common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value=service))
        ]
    )
    # Field 2 of ResourceSpans, whichever name this copy of the protocol gives it.
    scope = trace_pb2.ResourceSpans.DESCRIPTOR.fields_by_number[2]
    resource_spans = trace_pb2.ResourceSpans(resource=resource)
    getattr(resource_spans, scope.name).add(spans=list(spans))
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[resource_spans])


def test_spans_sent_over_otlp_grpc_become_one_trace_with_its_links() -> None:
    store = TraceStore()

    async def send() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((trace_service(store),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                export = channel.unary_unary(
                    f"/{TRACE_SERVICE}/Export",
                    request_serializer=trace_service_pb2.ExportTraceServiceRequest.SerializeToString,
                    response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString,
                )
                await export(
                    _export("productpage", _span(1, None, 0, 30, {"http.status_code": "200"}))
                )
                await export(
                    _export(
                        "reviews",
                        _span(2, 1, 5, 25, {"node_id": "sidecar~reviews-v1~default"}),
                        _span(3, 2, 10, 20, {"http.status_code": "503"}),
                    )
                )
        finally:
            await server.stop(None)

    asyncio.run(send())
    trace = store.get(TRACE.hex())
    assert trace is not None and store.spans_received == 3
    summary = trace.summary()
    assert (summary["rootService"], summary["spans"], summary["durationMs"]) == (
        "productpage",
        3,
        30.0,
    )
    assert summary["services"] == ["productpage", "reviews"] and summary["error"] is True
    spans = {s["spanId"]: s for s in trace.to_json()["spans"]}
    child = spans[(2).to_bytes(8, "big").hex()]
    assert child["parentSpanId"] == (1).to_bytes(8, "big").hex()
    assert (child["workload"], child["kind"], child["durationMs"]) == ("reviews-v1", "server", 20)


def test_the_store_keeps_the_most_recent_traces_and_a_bounded_number_of_spans_each() -> None:
    store = TraceStore(max_traces=3, max_spans=2)
    for i in range(5):
        request = _export("a", _span(1, None, 0, 10 * (i + 1)))
        for span in _spans_of_first(request):
            span.trace_id = bytes([i]) * 16
        store.add(spans_of(request))
    assert len(store) == 3 and store.traces_evicted == 2
    assert store.get((bytes([0]) * 16).hex()) is None
    store.add(spans_of(_export("a", *(_span(i, None, 0, 1) for i in range(1, 5)))))
    assert store.spans_dropped == 2
    # Failed first, then the slowest.
    failed = _export("b", _span(9, None, 0, 1, {"http.status_code": "500"}))
    _spans_of_first(failed)[0].trace_id = b"\xff" * 16
    store.add(spans_of(failed))
    assert store.recent()[0].trace_id == "ff" * 16
    assert [t.duration_ms for t in store.recent()[1:]] == [50.0, 1.0]
    assert [t.trace_id for t in store.recent(service="b")] == ["ff" * 16]
    assert [t.trace_id for t in store.recent(errors_only=True)] == ["ff" * 16]


def _spans_of_first(request: trace_service_pb2.ExportTraceServiceRequest) -> list[trace_pb2.Span]:
    scope = trace_pb2.ResourceSpans.DESCRIPTOR.fields_by_number[2]
    return list(getattr(request.resource_spans[0], scope.name)[0].spans)
