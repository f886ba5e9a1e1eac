"""What every Kubernetes-form document has: ``apiVersion``, ``kind``, ``metadata``; and
the references between documents (``parentRefs``, ``backendRefs``, ``targetRefs``),
with the Gateway API's field names and defaults."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated

from pydantic import Field, StringConstraints

from sidemesh.model.base import DnsLabel, Model, PortNumber
from sidemesh.model.refs import ServiceKey

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
SIDEMESH_GROUP = "sidemesh.io"
CORE_GROUP = ""
"""The group of a Kubernetes ``Service``: the empty string, as in Gateway API refs."""

ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=253)]
LabelValue = Annotated[str, StringConstraints(max_length=63)]


class ObjectMeta(Model):
    name: DnsLabel
    namespace: DnsLabel | None = None
    """Defaults to the mesh's default namespace."""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class ParentRef(Model):
    """What a route attaches to: a ``Service`` (GAMMA, a mesh route) or a ``Gateway``."""

    group: str | None = None
    kind: str | None = None
    """``Service`` (with group ``""``) or ``Gateway`` (the default, as in the Gateway API)."""
    name: ObjectName
    namespace: DnsLabel | None = None
    """Defaults to the route's namespace. A route naming a Service in another namespace
    is a consumer route: it applies to callers in the route's namespace only."""
    port: PortNumber | None = None
    """Only this port of the Service."""
    section_name: str | None = None

    @property
    def is_service(self) -> bool:
        return self.kind == "Service" and (self.group or "") == CORE_GROUP

    @property
    def is_gateway(self) -> bool:
        """The Gateway API's default parent: kind and group left out mean a Gateway."""
        return (self.kind or "Gateway") == "Gateway" and (
            self.group or GATEWAY_API_GROUP
        ) == GATEWAY_API_GROUP


class BackendRef(Model):
    """Where a rule sends requests: a Service and port, with a weight."""

    group: str | None = None
    kind: str | None = None
    """``Service`` (the default)."""
    name: ObjectName
    namespace: DnsLabel | None = None
    port: PortNumber | None = None
    weight: int = Field(default=1, ge=0, le=1_000_000)


class TargetRef(Model):
    """What a policy applies to (Gateway API policy attachment, GEP-713)."""

    group: str = CORE_GROUP
    kind: str = "Service"
    name: ObjectName
    section_name: str | None = None


def services_targeted(
    meta: ObjectMeta, target_refs: Sequence[TargetRef], services: Iterable[ServiceKey]
) -> list[ServiceKey]:
    """The services a policy of ``meta``'s namespace applies to: those its
    ``targetRefs`` name, or, with none, every service of its namespace."""
    namespace = meta.namespace or ""
    names = {t.name for t in target_refs}
    return sorted(
        key for key in services if key.namespace == namespace and (not names or key.name in names)
    )
