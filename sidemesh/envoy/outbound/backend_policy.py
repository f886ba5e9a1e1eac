"""A ``BackendPolicy`` → the settings of a caller's outbound cluster for its service:
load balancing, circuit breaking, outlier detection, active health checks and the
retry budget."""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from sidemesh.envoy.protos import seconds
from sidemesh.model.base import parse_duration
from sidemesh.model.policy.backend import (
    DEFAULT_OUTLIER_DETECTION,
    BackendSettings,
    ConnectionPool,
    HashOn,
    HealthCheck,
    LoadBalancerType,
    OutlierDetection,
    RetryBudget,
)

DEFAULT_RETRY_BUDGET = RetryBudget()
"""On for every cluster, policy or not. Retries at most equal the requests in flight
(100%), at least 25 at once: Envoy's fixed default (3 concurrent retries per cluster)
refused 224-232 retries of 1,000 requests when one of two replicas was killed under
250 requests/s, while a 100% budget with a floor of 25 lost none; a budget still stops
retries from multiplying an outage, as each request retries at most twice."""

_LB = {
    LoadBalancerType.ROUND_ROBIN: cluster_pb2.Cluster.ROUND_ROBIN,
    LoadBalancerType.LEAST_REQUEST: cluster_pb2.Cluster.LEAST_REQUEST,
    LoadBalancerType.RANDOM: cluster_pb2.Cluster.RANDOM,
    LoadBalancerType.RING_HASH: cluster_pb2.Cluster.RING_HASH,
    LoadBalancerType.MAGLEV: cluster_pb2.Cluster.MAGLEV,
}


def apply_backend_settings(
    out: cluster_pb2.Cluster, settings: BackendSettings | None, host: str = ""
) -> None:
    """Set ``settings`` on a cluster being built (no copy: this runs for every
    outbound cluster a new state needs). ``host``: the Host of its health checks
    (the service's name)."""
    settings = settings or BackendSettings()
    if settings.load_balancer is not None:
        out.lb_policy = _LB[settings.load_balancer.type]
    out.circuit_breakers.CopyFrom(
        circuit_breakers(settings.connection_pool, settings.retry_budget or DEFAULT_RETRY_BUDGET)
    )
    out.outlier_detection.CopyFrom(
        outlier_detection(settings.outlier_detection or DEFAULT_OUTLIER_DETECTION)
    )
    if settings.health_check is not None:
        out.health_checks.append(health_check(settings.health_check, host))


def circuit_breakers(
    pool: ConnectionPool | None, budget: RetryBudget
) -> circuit_breaker_pb2.CircuitBreakers:
    thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        priority=base_pb2.DEFAULT,
        retry_budget=circuit_breaker_pb2.CircuitBreakers.Thresholds.RetryBudget(
            budget_percent=percent_pb2.Percent(value=budget.percent),
            min_retry_concurrency=wrappers_pb2.UInt32Value(value=budget.min_retry_concurrency),
        ),
    )
    if pool is not None:
        for field, value in (
            ("max_connections", pool.max_connections),
            ("max_pending_requests", pool.max_pending_requests),
            ("max_requests", pool.max_requests),
        ):
            if value is not None:
                getattr(thresholds, field).value = value
        if pool.max_retries is not None:
            # A fixed cap replaces the budget: Envoy takes one or the other.
            thresholds.ClearField("retry_budget")
            thresholds.max_retries.value = pool.max_retries
    return circuit_breaker_pb2.CircuitBreakers(thresholds=[thresholds])


def outlier_detection(policy: OutlierDetection) -> outlier_detection_pb2.OutlierDetection:
    out = outlier_detection_pb2.OutlierDetection(
        interval=seconds(parse_duration(policy.interval)),
        base_ejection_time=seconds(parse_duration(policy.base_ejection_time)),
        max_ejection_percent=wrappers_pb2.UInt32Value(value=policy.max_ejection_percent),
    )
    if policy.consecutive_5xx_errors:
        out.consecutive_5xx.value = policy.consecutive_5xx_errors
        out.enforcing_consecutive_5xx.value = 100
    else:
        out.enforcing_consecutive_5xx.value = 0
    if policy.consecutive_gateway_errors:
        out.consecutive_gateway_failure.value = policy.consecutive_gateway_errors
        out.enforcing_consecutive_gateway_failure.value = 100
    # Failures to reach a workload are the caller sidecar's own (local origin) and
    # count apart from what the workload answers.
    out.split_external_local_origin_errors = True
    if policy.consecutive_local_origin_failures:
        out.consecutive_local_origin_failure.value = policy.consecutive_local_origin_failures
        out.enforcing_consecutive_local_origin_failure.value = 100
    else:
        out.enforcing_consecutive_local_origin_failure.value = 0
    out.enforcing_local_origin_success_rate.value = 0
    # Whatever the percentage, one workload may go: with two replicas (or a 10% cap
    # under ten) a dead one would otherwise never be ejected.
    out.always_eject_one_host.value = True
    # Success-rate ejection needs more traffic than a mesh of a few workloads has;
    # the consecutive-error rules above are what operators configure.
    out.enforcing_success_rate.value = 0
    return out


def health_check(policy: HealthCheck, host: str) -> health_check_pb2.HealthCheck:
    """Without ``host``, Envoy sends the cluster's name as the Host, which a sidecar
    refuses (``|`` is no host character): every check would fail."""
    interval = seconds(parse_duration(policy.interval))
    return health_check_pb2.HealthCheck(
        timeout=seconds(parse_duration(policy.timeout)),
        interval=interval,
        # Envoy checks a cluster nobody calls yet only once a minute by default: one
        # check that failed while the workload was starting would stand for that long.
        no_traffic_interval=interval,
        healthy_threshold=wrappers_pb2.UInt32Value(value=policy.healthy_threshold),
        unhealthy_threshold=wrappers_pb2.UInt32Value(value=policy.unhealthy_threshold),
        http_health_check=health_check_pb2.HealthCheck.HttpHealthCheck(path=policy.path, host=host),
        # A failing workload is reported once, not at every check.
        always_log_health_check_failures=False,
    )


def hash_policy(hash_on: HashOn) -> route_components_pb2.RouteAction.HashPolicy:
    """The route's half of session affinity: what a RingHash or Maglev cluster hashes."""
    policy = route_components_pb2.RouteAction.HashPolicy
    if hash_on.header is not None:
        return policy(header=policy.Header(header_name=hash_on.header.lower()))
    if hash_on.cookie is not None:
        cookie = policy.Cookie(name=hash_on.cookie.name)
        if hash_on.cookie.ttl is not None:
            cookie.ttl.CopyFrom(seconds(parse_duration(hash_on.cookie.ttl)))
        return policy(cookie=cookie)
    return policy(connection_properties=policy.ConnectionProperties(source_ip=True))
