"""sidemesh's own policy kinds, ``sidemesh.io/v1alpha1``: ``BackendPolicy`` (how callers
treat a service's workloads: load balancing, connection pool and circuit breaking,
outlier detection, health checks, retry budget, inbound rate limit) and
``FaultInjection`` (named by a route's ``ExtensionRef`` filter)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from sidemesh.model.base import Duration, Model
from sidemesh.model.policy.common import ObjectMeta, TargetRef
from sidemesh.model.policy.routes import HTTPRouteMatch

SIDEMESH_API_VERSION = "sidemesh.io/v1alpha1"


class LoadBalancerType(StrEnum):
    ROUND_ROBIN = "RoundRobin"
    LEAST_REQUEST = "LeastRequest"
    RANDOM = "Random"
    RING_HASH = "RingHash"
    MAGLEV = "Maglev"

    @property
    def hashes(self) -> bool:
        return self in (LoadBalancerType.RING_HASH, LoadBalancerType.MAGLEV)


class HashCookie(Model):
    name: str = Field(min_length=1)
    ttl: Duration | None = None
    """With a TTL, Envoy sets the cookie when the request has none."""


class HashOn(Model):
    """What keeps a caller on one workload (session affinity): exactly one of these."""

    header: str | None = None
    cookie: HashCookie | None = None
    source_ip: bool = False

    @model_validator(mode="after")
    def _one(self) -> HashOn:
        given = [self.header is not None, self.cookie is not None, self.source_ip]
        if sum(given) != 1:
            raise ValueError("hashOn takes exactly one of header, cookie or sourceIP")
        return self


class LoadBalancer(Model):
    type: LoadBalancerType = LoadBalancerType.ROUND_ROBIN
    hash_on: HashOn | None = None

    @model_validator(mode="after")
    def _hash_needs_key(self) -> LoadBalancer:
        if self.type.hashes and self.hash_on is None:
            raise ValueError(f"{self.type.value} needs hashOn (a header, cookie or sourceIP)")
        if not self.type.hashes and self.hash_on is not None:
            raise ValueError(f"hashOn needs type RingHash or Maglev, not {self.type.value}")
        return self


class ConnectionPool(Model):
    """Circuit breaking: past these, Envoy answers 503 at once instead of queueing."""

    max_connections: int | None = Field(default=None, ge=1)
    max_pending_requests: int | None = Field(default=None, ge=1)
    max_requests: int | None = Field(default=None, ge=1)
    max_retries: int | None = Field(default=None, ge=0)


class OutlierDetection(Model):
    """Ejection of a workload that keeps failing. Answers from the workload (5xx,
    gateway errors) count apart from failures to reach it at all (connection refused
    or reset, no answer in time), which the caller's own sidecar sees: those eject a
    workload after ``consecutiveLocalOriginFailures`` even with no policy."""

    consecutive_5xx_errors: int | None = Field(default=5, ge=0, alias="consecutive5xxErrors")
    consecutive_gateway_errors: int | None = Field(default=None, ge=0)
    consecutive_local_origin_failures: int | None = Field(default=2, ge=0)
    interval: Duration = "10s"
    base_ejection_time: Duration = "30s"
    max_ejection_percent: int = Field(default=10, ge=0, le=100)


DEFAULT_OUTLIER_DETECTION = OutlierDetection(
    consecutive_5xx_errors=None, interval="1s", base_ejection_time="5s", max_ejection_percent=100
)
"""On for every service, policy or not: a workload the caller's sidecar failed to reach
twice running (its sidecar died, its host went away) is left out for 5 s, then 10 s,
... instead of costing every other request a retry until the registry drops it. Twice,
because a request makes three attempts: its third then goes elsewhere, even when the
only other workload is itself left out (a sidecar that restarted, dying in turn):
any share of a service may go, since with too few left Envoy sends to all of them
again (its panic threshold), never worse than no ejection. Its app's own answers eject
nothing unless a policy says so."""


class HealthCheck(Model):
    """Active HTTP health checks of each workload, from every caller's sidecar."""

    path: str = Field(default="/", pattern=r"^/")
    interval: Duration = "5s"
    timeout: Duration = "1s"
    healthy_threshold: int = Field(default=1, ge=1)
    unhealthy_threshold: int = Field(default=2, ge=1)


class RetryBudget(Model):
    """Retries to a service at any moment: at most ``percent`` of its active requests,
    and never fewer than ``minRetryConcurrency``. On by default."""

    percent: float = Field(default=100.0, gt=0, le=100)
    min_retry_concurrency: int = Field(default=25, ge=0)


class RouteRateLimit(Model):
    """A bucket of its own for the requests ``match`` selects (a Gateway API route
    match: path, method, headers, query params). It replaces the service's bucket for
    them: a login path limited to 5 a minute does not also spend the service's."""

    match: HTTPRouteMatch
    requests: int = Field(ge=1)
    per: Duration = "1s"
    burst: int | None = Field(default=None, ge=1)


class RateLimit(Model):
    """Inbound local rate limit (a token bucket in each of the service's sidecars):
    ``requests`` per ``per``; past it, 429 with ``retry-after``. ``routes``: buckets for
    some requests alone, the first whose match fits taking the request."""

    requests: int | None = Field(default=None, ge=1)
    """Left out: only the requests ``routes`` select are limited."""
    per: Duration = "1s"
    burst: int | None = Field(default=None, ge=1)
    """Bucket size; defaults to ``requests``."""
    routes: tuple[RouteRateLimit, ...] = ()

    @model_validator(mode="after")
    def _limits_something(self) -> RateLimit:
        if self.requests is None and not self.routes:
            raise ValueError("needs requests (for the whole service) or routes, or both")
        return self


class BackendSettings(Model):
    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    health_check: HealthCheck | None = None
    retry_budget: RetryBudget | None = None


class Subset(BackendSettings):
    """Settings for the workloads of the service whose labels match."""

    labels: dict[str, str] = Field(min_length=1)


class BackendPolicySpec(BackendSettings):
    target_refs: tuple[TargetRef, ...] = Field(min_length=1)
    rate_limit: RateLimit | None = None
    subsets: tuple[Subset, ...] = ()


class BackendPolicy(Model):
    api_version: Literal["sidemesh.io/v1alpha1"]
    kind: Literal["BackendPolicy"]
    metadata: ObjectMeta
    spec: BackendPolicySpec


class FaultDelay(Model):
    fixed_delay: Duration
    percentage: float = Field(default=100.0, ge=0, le=100)


class FaultAbort(Model):
    http_status: int = Field(ge=200, le=599)
    percentage: float = Field(default=100.0, ge=0, le=100)


class FaultInjectionSpec(Model):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None

    @model_validator(mode="after")
    def _something(self) -> FaultInjectionSpec:
        if self.delay is None and self.abort is None:
            raise ValueError("a FaultInjection has a delay, an abort, or both")
        return self


class FaultInjection(Model):
    api_version: Literal["sidemesh.io/v1alpha1"]
    kind: Literal["FaultInjection"]
    metadata: ObjectMeta
    spec: FaultInjectionSpec
