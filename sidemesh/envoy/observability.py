"""What a proxy tells about the traffic it carries: access logs and trace spans.

Owns: the access log and the tracing of every HTTP connection manager (the caller's
outbound side, the callee's inbound side, the gateway). Spans: Envoy's OpenTelemetry
tracer, W3C trace context, exported over OTLP/gRPC to the control plane (over the
connection each proxy already has to it for xDS) or to the mesh's collector.
Access log: one JSON line
per request that did not succeed (a 4xx or 5xx answer, or a response flag Envoy sets
when it ended the request itself), on the sidecar's own output, so ``sidemesh logs``
shows it beside the agent's lines. Each line says who called (the peer's SPIFFE ID),
what, what came back, and why: ``responseCodeDetails`` is Envoy's own reason, such as
``rbac_access_denied_matched_policy[default/b-admin/rule-0]`` for a request an
AuthorizationPolicy refused, naming the policy and rule.
Must not: decide which listener logs (the connection manager's builder does), or put
into words what the fields mean (``sidemesh logs`` does, see ``cli.access_log``).
"""

from __future__ import annotations

from typing import NamedTuple

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, grpc_service_pb2, substitution_format_string_pb2
from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.v3 import percent_pb2
from google.protobuf import struct_pb2

from sidemesh.envoy.bootstrap import XDS_CLUSTER
from sidemesh.envoy.protos import hosts_cluster, http2_upstream_options, packed, seconds

STDOUT_LOGGER = "envoy.access_loggers.stdout"
FAILED_FROM_STATUS = 400

_FIELDS = {
    "log": "access",
    "time": "%START_TIME%",
    "listener": "%ACCESS_LOG_TYPE%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(:PATH)%",
    "authority": "%REQ(:AUTHORITY)%",
    "status": "%RESPONSE_CODE%",
    "responseCodeDetails": "%RESPONSE_CODE_DETAILS%",
    "responseFlags": "%RESPONSE_FLAGS%",
    "peer": "%DOWNSTREAM_PEER_URI_SAN%",
    "peerAddress": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "upstream": "%UPSTREAM_HOST%",
    "upstreamCluster": "%UPSTREAM_CLUSTER%",
    "upstreamFailure": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    "durationMs": "%DURATION%",
    "requestId": "%REQ(X-REQUEST-ID)%",
    "traceId": "%TRACE_ID%",
    "upstreamPeer": "%UPSTREAM_PEER_URI_SAN%",
}


def access_log(listener: str, every_request: bool = False) -> accesslog_pb2.AccessLog:
    """One JSON line per failed request (or, ``every_request``, per request)."""
    fields = struct_pb2.Struct()
    fields.update({**_FIELDS, "listener": listener})
    logger = stream_pb2.StdoutAccessLog(
        log_format=substitution_format_string_pb2.SubstitutionFormatString(json_format=fields)
    )
    log = accesslog_pb2.AccessLog(name=STDOUT_LOGGER, typed_config=packed(logger))
    if not every_request:
        log.filter.CopyFrom(_failed_requests())
    return log


def _failed_requests() -> accesslog_pb2.AccessLogFilter:
    return accesslog_pb2.AccessLogFilter(
        or_filter=accesslog_pb2.OrFilter(
            filters=[
                accesslog_pb2.AccessLogFilter(
                    status_code_filter=accesslog_pb2.StatusCodeFilter(
                        comparison=accesslog_pb2.ComparisonFilter(
                            op=accesslog_pb2.ComparisonFilter.GE,
                            value=base_pb2.RuntimeUInt32(
                                default_value=FAILED_FROM_STATUS,
                                runtime_key="sidemesh.access_log_min_status",
                            ),
                        )
                    )
                ),
                accesslog_pb2.AccessLogFilter(
                    response_flag_filter=accesslog_pb2.ResponseFlagFilter()
                ),
            ]
        )
    )


# --- tracing ------------------------------------------------------------------------

OPENTELEMETRY_TRACER = "envoy.tracers.opentelemetry"
CONTROL_PLANE_CLUSTER = XDS_CLUSTER
"""The bootstrap's cluster to the control plane: spans go where xDS comes from, so a
proxy needs no other address (and the control plane no other port) to be traced."""
COLLECTOR_CLUSTER = "otlp-collector"
EXPORT_TIMEOUT_S = 1.0
"""An export that takes longer is dropped: spans are never worth holding a proxy up."""


class ProxyTelemetry(NamedTuple):
    """How one proxy's connection manager traces and logs (a part of memo keys: every
    input of both)."""

    service: str
    """``service.name`` of its spans: the service (or gateway) the proxy stands for."""
    sampling_percentage: float
    """Of the requests that arrive without a sampled ``traceparent``: the share it
    starts a trace for. A request with one follows its decision."""
    collector: bool
    """Spans go to the mesh's collector rather than to the control plane."""
    log_every_request: bool = False
    """Log every request, not only failed ones (Telemetry ``accessLogging``)."""


def http_tracing(telemetry: ProxyTelemetry) -> hcm_pb2.HttpConnectionManager.Tracing:
    """Envoy's OpenTelemetry tracer: it reads and writes W3C ``traceparent`` and
    ``tracestate``, makes a server span where a request comes into a workload and a
    client span where it leaves one, and tags each with the proxy (``node_id``)."""
    cluster = COLLECTOR_CLUSTER if telemetry.collector else CONTROL_PLANE_CLUSTER
    exporter = opentelemetry_pb2.OpenTelemetryConfig(
        grpc_service=grpc_service_pb2.GrpcService(
            envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster),
            timeout=seconds(EXPORT_TIMEOUT_S),
        ),
        service_name=telemetry.service,
    )
    return hcm_pb2.HttpConnectionManager.Tracing(
        provider=http_tracer_pb2.Tracing.Http(
            name=OPENTELEMETRY_TRACER, typed_config=packed(exporter)
        ),
        random_sampling=percent_pb2.Percent(value=telemetry.sampling_percentage),
    )


def collector_cluster(address: str) -> cluster_pb2.Cluster:
    """The mesh's OpenTelemetry collector, ``HOST:PORT``, spoken to over HTTP/2 (gRPC)."""
    host, _, port = address.rpartition(":")
    cluster = hosts_cluster(COLLECTOR_CLUSTER, [host], int(port))
    for key, value in http2_upstream_options().items():
        cluster.typed_extension_protocol_options[key].CopyFrom(value)
    return cluster
