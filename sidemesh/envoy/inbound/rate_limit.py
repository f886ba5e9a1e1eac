"""A BackendPolicy's ``rateLimit`` → the callee's local rate limit: a token bucket in
each of the service's sidecars, enforced before the app sees the request; past it,
429 with ``retry-after`` (how long until the bucket refills), counted in Envoy's stats
(``<stat prefix>.rate_limited``)."""

from __future__ import annotations

import math

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.type.v3 import percent_pb2, token_bucket_pb2
from google.protobuf import wrappers_pb2

from sidemesh.envoy.protos import seconds
from sidemesh.model.base import parse_duration
from sidemesh.model.policy.backend import RateLimit

ALL = base_pb2.RuntimeFractionalPercent(
    default_value=percent_pb2.FractionalPercent(
        numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED
    )
)


def local_rate_limit(stat_prefix: str, limit: RateLimit) -> local_rate_limit_pb2.LocalRateLimit:
    per_s = parse_duration(limit.per)
    return local_rate_limit_pb2.LocalRateLimit(
        stat_prefix=stat_prefix,
        token_bucket=token_bucket_pb2.TokenBucket(
            max_tokens=limit.burst or limit.requests,
            tokens_per_fill=wrappers_pb2.UInt32Value(value=limit.requests),
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
