"""A BackendPolicy's ``rateLimit`` → the callee's local rate limits: token buckets in
each of the service's sidecars, enforced before the app sees the request; past one,
429 with ``retry-after`` (how long until the bucket refills), counted in Envoy's stats
(``<stat prefix>.http_local_rate_limit.rate_limited``). The service's bucket is the
filter's own; a route's bucket is its inbound route's ``typed_per_filter_config``,
which replaces the filter's for the requests that route takes."""

from __future__ import annotations

import math

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.type.v3 import percent_pb2, token_bucket_pb2
from google.protobuf import wrappers_pb2

from sidemesh.envoy import names
from sidemesh.envoy.protos import seconds
from sidemesh.model import ServiceKey
from sidemesh.model.base import parse_duration
from sidemesh.model.policy.backend import RateLimit, RouteRateLimit

ALL = base_pb2.RuntimeFractionalPercent(
    default_value=percent_pb2.FractionalPercent(
        numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED
    )
)


def local_rate_limit(service: ServiceKey, limit: RateLimit) -> local_rate_limit_pb2.LocalRateLimit:
    """The filter: the service's bucket, or none (only its routes' buckets limit)."""
    if limit.requests is None:
        return local_rate_limit_pb2.LocalRateLimit(stat_prefix=names.rate_limit_stat(service))
    return _bucket(names.rate_limit_stat(service), limit.requests, limit.per, limit.burst)


def route_rate_limit(
    service: ServiceKey, index: int, limit: RouteRateLimit
) -> local_rate_limit_pb2.LocalRateLimit:
    """Route ``index`` of ``limit``'s list: counted apart, under its own stat prefix."""
    return _bucket(names.rate_limit_stat(service, index), limit.requests, limit.per, limit.burst)


def _bucket(
    stat_prefix: str, requests: int, per: str, burst: int | None
) -> local_rate_limit_pb2.LocalRateLimit:
    per_s = parse_duration(per)
    return local_rate_limit_pb2.LocalRateLimit(
        stat_prefix=stat_prefix,
        token_bucket=token_bucket_pb2.TokenBucket(
            max_tokens=burst or requests,
            tokens_per_fill=wrappers_pb2.UInt32Value(value=requests),
            fill_interval=seconds(per_s),
        ),
        filter_enabled=ALL,
        filter_enforced=ALL,
        response_headers_to_add=[
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key="retry-after", value=str(math.ceil(per_s))),
                append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
            )
        ],
    )
