"""Outbound clusters: one per service port, its endpoints by EDS, called over mTLS
(unless the service disables it) that accepts only the service's identities."""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from sidemesh.envoy import names
from sidemesh.envoy.protos import (
    CONNECT_TIMEOUT_S,
    ads_config_source,
    http2_upstream_options,
    seconds,
)
from sidemesh.envoy.tls import upstream_mtls
from sidemesh.model import MtlsMode, ServiceKey, ServicePort

# How many retries a caller's sidecar may have under way to one service, as Envoy's
# retry budget: at most RETRY_BUDGET_PERCENT of the requests in flight to it, and never
# fewer than MIN_RETRY_CONCURRENCY. Envoy's fixed default (3 retries at once per
# cluster) does not grow with traffic: when one of two replicas was killed under 250
# requests/s, it refused 224-232 retries of 1000 requests, each a 503 to the app.
#
# Envoy counts a retry from the moment it is decided until its attempt ends, and
# counts that attempt among the requests in flight; so at 100% the budget refuses a
# retry only when more retries wait out their backoff than first attempts are in
# flight: a fast-failing storm, not a busy service. It needs to be that high because
# losing one of two replicas makes half the requests fail at once while only the other
# half count as in flight: in the run above 20% (Envoy's suggestion) still lost 228-235
# requests; at 800 requests/s (2 cores, near saturation) 50% lost 43, 100% lost 9.
# Istio leaves retries effectively unlimited; Linkerd bounds them by a budget (20% of
# requests, at least 10 a second). Each request still retries at most twice
# (routes.DEFAULT_RETRIES, beside this module), which bounds the extra load a failing
# service gets; a budget per service comes with traffic policies.
RETRY_BUDGET_PERCENT = 100.0
MIN_RETRY_CONCURRENCY = 25
"""The floor, for light traffic, where the requests in flight are a handful: in the
run above (~10 in flight), at 100%, a floor of 3 lost 2-4 requests, 10 lost 1-3,
25 none."""


def retry_limits() -> circuit_breaker_pb2.CircuitBreakers:
    budget = circuit_breaker_pb2.CircuitBreakers.Thresholds.RetryBudget(
        budget_percent=percent_pb2.Percent(value=RETRY_BUDGET_PERCENT),
        min_retry_concurrency=wrappers_pb2.UInt32Value(value=MIN_RETRY_CONCURRENCY),
    )
    # The other thresholds (connections, requests, pending) keep Envoy's defaults.
    return circuit_breaker_pb2.CircuitBreakers(
        thresholds=[
            circuit_breaker_pb2.CircuitBreakers.Thresholds(
                priority=base_pb2.DEFAULT, retry_budget=budget
            )
        ]
    )


def outbound_cluster(
    key: ServiceKey, port: ServicePort, mtls: MtlsMode, identities: tuple[str, ...]
) -> cluster_pb2.Cluster:
    """``identities``: the SPIFFE IDs allowed to answer for the service. A service in
    DISABLE mode is called in plaintext; PERMISSIVE and STRICT ones over mTLS."""
    name = names.outbound_cluster(key, port.port)
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=ads_config_source(), service_name=name
        ),
        connect_timeout=seconds(CONNECT_TIMEOUT_S),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        circuit_breakers=retry_limits(),
    )
    if mtls is not MtlsMode.DISABLE:
        cluster.transport_socket.CopyFrom(
            upstream_mtls(identities, sni=name, http2=port.protocol.needs_http2)
        )
    if port.protocol.needs_http2:
        for k, v in http2_upstream_options().items():
            cluster.typed_extension_protocol_options[k].CopyFrom(v)
    return cluster
