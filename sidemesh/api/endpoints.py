"""``GET /v1/endpoints``: how the callers' Envoys see each endpoint, asked of every
connected proxy when the request comes; the response models OpenAPI describes."""

from __future__ import annotations

from sidemesh.api.response import ApiModel
from sidemesh.envoy import ProxyId
from sidemesh.model import MeshState
from sidemesh.model.refs import WorkloadRef
from sidemesh.telemetry import (
    CallerViews,
    EndpointHealthReport,
    ProxyAdmin,
    endpoint_health,
)
from sidemesh.xds import StatusBoard


class Views(ApiModel):
    health: str
    """``healthy``, ``ejected by 2 of 3 callers (outlier detection)``, ``failing health
    check at 3 of 3 callers``, ``not seen by any caller``; several joined by ``; ``."""
    callers: list[str]
    """The callers (``name.namespace``) whose Envoy has it and answered."""
    ejected_by: list[str]
    failing_health_check_by: list[str]
    degraded_by: list[str]
    awaiting_health_check_by: list[str]

    @classmethod
    def of(cls, views: CallerViews) -> Views:
        return cls(
            health=views.health,
            callers=list(views.callers),
            ejected_by=list(views.ejected_by),
            failing_health_check_by=list(views.failing_health_check_by),
            degraded_by=list(views.degraded_by),
            awaiting_health_check_by=list(views.awaiting_health_check_by),
        )


class EndpointOut(Views):
    service: str
    namespace: str
    port: int
    address: str
    endpoint_port: int
    workload: str | None


class WorkloadOut(Views):
    name: str
    namespace: str


class CallerOut(ApiModel):
    caller: str
    kind: str
    admin: str
    answered: bool
    error: str | None
    """Why its Envoy gave no answer: its verdicts are missing from every count."""


class EndpointsResponse(ApiModel):
    mesh_version: int
    callers: list[CallerOut]
    """Every connected proxy that was asked."""
    endpoints: list[EndpointOut]
    workloads: list[WorkloadOut]

    @classmethod
    def of(cls, report: EndpointHealthReport) -> EndpointsResponse:
        return cls(
            mesh_version=report.mesh_version,
            callers=[
                CallerOut(
                    caller=str(c.caller),
                    kind=c.kind,
                    admin=c.admin,
                    answered=c.error is None,
                    error=c.error,
                )
                for c in report.callers
            ],
            endpoints=[
                EndpointOut(
                    service=e.service.name,
                    namespace=e.service.namespace,
                    port=e.port,
                    address=e.address,
                    endpoint_port=e.endpoint_port,
                    workload=e.workload.name if e.workload else None,
                    **Views.of(e.views).model_dump(),
                )
                for e in report.endpoints
            ],
            workloads=[
                WorkloadOut(
                    name=w.workload.name,
                    namespace=w.workload.namespace,
                    **Views.of(w.views).model_dump(),
                )
                for w in report.workloads
            ],
        )


async def endpoints_response(
    state: MeshState, status: StatusBoard, timeout_s: float
) -> EndpointsResponse:
    return EndpointsResponse.of(
        await endpoint_health(state, connected_proxies(state, status), timeout_s)
    )


def connected_proxies(state: MeshState, status: StatusBoard) -> list[ProxyAdmin]:
    """The connected proxies of ``state``'s workloads and gateways, with the admin
    socket each named when it connected: the callers whose view counts now. A proxy the
    mesh no longer names, or one that named no socket, is not asked."""
    found = []
    for node_id, proxy in sorted(status.proxies.items()):
        if not proxy.connected or proxy.admin_socket is None:
            continue
        try:
            ref = ProxyId.parse(node_id)
        except ValueError:
            continue
        if state.workload(ref.workload, ref.namespace) is not None:
            kind = "workload"
        elif state.gateway(ref.workload, ref.namespace) is not None:
            kind = "gateway"
        else:
            continue
        found.append(ProxyAdmin(WorkloadRef(ref.workload, ref.namespace), kind, proxy.admin_socket))
    return found
