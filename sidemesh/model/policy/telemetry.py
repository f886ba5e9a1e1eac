"""``Telemetry`` (``sidemesh.io/v1alpha1``): how much of a service's traffic is traced,
and which of its requests its sidecars log.

The mesh's default sampling and where spans go are in mesh.yaml (``mesh.tracing``); a
Telemetry document sets sampling and logging for the services of its namespace, or for
those its ``targetRefs`` name (the one naming a service decides for it, whole: fields it
leaves out take the mesh's defaults, not a namespace-wide document's).

Sampling is decided where a trace starts (the first proxy that sees a request without a
``traceparent``); every proxy after it follows that decision, so a trace is never cut
into pieces."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Literal

from pydantic import Field

from sidemesh.model.base import Model
from sidemesh.model.policy.common import ObjectMeta, TargetRef, services_targeted
from sidemesh.model.refs import ServiceKey


class TracingSettings(Model):
    random_sampling_percentage: float = Field(ge=0, le=100)
    """The share of the requests that start a trace at this service's proxies, in
    percent (Istio's field of the same name)."""


class LoggedRequests(StrEnum):
    FAILURES = "Failures"
    """4xx and 5xx answers and requests Envoy ended itself (the default)."""
    ALL = "All"


class AccessLogging(Model):
    requests: LoggedRequests = LoggedRequests.FAILURES
    """Which requests the service's sidecars log, one JSON line each."""


class TelemetrySpec(Model):
    target_refs: tuple[TargetRef, ...] = ()
    """Services it applies to; left out, every service of its namespace."""
    tracing: TracingSettings | None = None
    access_logging: AccessLogging | None = None


class Telemetry(Model):
    api_version: Literal["sidemesh.io/v1alpha1"]
    kind: Literal["Telemetry"]
    metadata: ObjectMeta
    spec: TelemetrySpec


TelemetrySettings = TelemetrySpec
"""What applies to one service: the spec of the Telemetry that decides for it."""


def settings_by_service(
    telemetry: Sequence[Telemetry], services: Iterable[ServiceKey]
) -> Mapping[ServiceKey, TelemetrySettings]:
    """Each service a Telemetry applies to, with that document's spec: one naming the
    service in ``targetRefs`` before one for its whole namespace (checks refuse two of
    the same reach for one service, so the order written never decides)."""
    keys = list(services)
    found: dict[ServiceKey, TelemetrySpec] = {}
    for policy in sorted(telemetry, key=lambda p: bool(p.spec.target_refs)):
        for key in services_targeted(policy.metadata, policy.spec.target_refs, keys):
            found[key] = policy.spec
    return found


def namespace_settings(telemetry: Sequence[Telemetry], namespace: str) -> TelemetrySettings | None:
    """What a namespace-wide Telemetry (no ``targetRefs``) of ``namespace`` sets for its
    proxies that no Telemetry names (its gateways, say)."""
    for policy in telemetry:
        if not policy.spec.target_refs and policy.metadata.namespace == namespace:
            return policy.spec
    return None
