"""What a proxy tells about the traffic it carries: access logs for now.

Owns: the access log of every HTTP connection manager (the caller's outbound side,
the callee's inbound side, the gateway). One JSON line
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

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from google.protobuf import struct_pb2

from sidemesh.envoy.protos import packed

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
}


def failed_requests_log(listener: str) -> accesslog_pb2.AccessLog:
    fields = struct_pb2.Struct()
    fields.update({**_FIELDS, "listener": listener})
    logger = stream_pb2.StdoutAccessLog(
        log_format=substitution_format_string_pb2.SubstitutionFormatString(json_format=fields)
    )
    return accesslog_pb2.AccessLog(
        name=STDOUT_LOGGER,
        typed_config=packed(logger),
        filter=accesslog_pb2.AccessLogFilter(
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
        ),
    )
