"""The control plane as an OpenTelemetry collector: the OTLP/gRPC trace service,
served on the xDS port (each proxy already holds a connection there), feeding a
``TraceStore``. The service is registered by name, with the message types of the
OpenTelemetry protocol, so no generated gRPC stubs are needed."""

from __future__ import annotations

from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from sidemesh.telemetry.traces import TraceStore, spans_of

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def trace_service(store: TraceStore) -> grpc.GenericRpcHandler[Any, Any]:
    """``TraceService/Export``: every span of the request goes into ``store``."""

    async def export(
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        store.add(spans_of(request))
        return trace_service_pb2.ExportTraceServiceResponse()

    return grpc.method_handlers_generic_handler(
        TRACE_SERVICE,
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                export,
                request_deserializer=trace_service_pb2.ExportTraceServiceRequest.FromString,
                response_serializer=trace_service_pb2.ExportTraceServiceResponse.SerializeToString,
            )
        },
    )
