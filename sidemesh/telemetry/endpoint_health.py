"""How the callers see each endpoint: which of their Envoys have ejected it (outlier
detection) or find it failing its active health check.

Health is a caller's opinion, not a fact about the workload: outlier detection runs in
each caller's Envoy on the responses that caller got, and each caller checks on its
own. So an endpoint's health is counted over its callers ("ejected by 2 of 3 callers"),
and a workload's over the callers of any of its endpoints."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sidemesh.model import MeshState
from sidemesh.model.refs import ServiceKey, WorkloadRef
from sidemesh.telemetry.admin import ADMIN_TIMEOUT_S, AdminAnswer, ProxyAdmin, ask_all
from sidemesh.telemetry.envoy_clusters import HealthFlag, normalized_address, outbound_hosts

CLUSTERS_PATH = "/clusters?format=json"

# In the order an operator should read them: what takes traffic away first.
_PHRASES = (
    (HealthFlag.EJECTED, "ejected by {n} of {m} callers (outlier detection)"),
    (HealthFlag.FAILING_HEALTH_CHECK, "failing health check at {n} of {m} callers"),
    (HealthFlag.DEGRADED, "degraded at {n} of {m} callers (health check)"),
    (HealthFlag.AWAITING_HEALTH_CHECK, "awaiting its first health check at {n} of {m} callers"),
)
HEALTHY = "healthy"
UNSEEN = "not seen by any caller"


@dataclass(frozen=True)
class CallerViews:
    """Which callers (``name.namespace``) have an endpoint, and which of them hold each
    verdict against it; only callers whose Envoy answered count."""

    callers: tuple[str, ...] = ()
    ejected_by: tuple[str, ...] = ()
    failing_health_check_by: tuple[str, ...] = ()
    degraded_by: tuple[str, ...] = ()
    awaiting_health_check_by: tuple[str, ...] = ()

    @classmethod
    def of(cls, seen: Mapping[str, frozenset[HealthFlag]]) -> CallerViews:
        """From each caller's flags (for one endpoint, or the union over a workload's)."""

        def holding(flag: HealthFlag) -> tuple[str, ...]:
            return tuple(sorted(caller for caller, flags in seen.items() if flag in flags))

        return cls(
            callers=tuple(sorted(seen)),
            ejected_by=holding(HealthFlag.EJECTED),
            failing_health_check_by=holding(HealthFlag.FAILING_HEALTH_CHECK),
            degraded_by=holding(HealthFlag.DEGRADED),
            awaiting_health_check_by=holding(HealthFlag.AWAITING_HEALTH_CHECK),
        )

    def holding(self, flag: HealthFlag) -> tuple[str, ...]:
        return {
            HealthFlag.EJECTED: self.ejected_by,
            HealthFlag.FAILING_HEALTH_CHECK: self.failing_health_check_by,
            HealthFlag.DEGRADED: self.degraded_by,
            HealthFlag.AWAITING_HEALTH_CHECK: self.awaiting_health_check_by,
        }[flag]

    @property
    def health(self) -> str:
        """One line: ``healthy``, ``ejected by 2 of 3 callers (outlier detection)``, ...
        (several verdicts joined by ``; ``)."""
        if not self.callers:
            return UNSEEN
        m = len(self.callers)
        verdicts = [
            phrase.format(n=len(self.holding(flag)), m=m)
            for flag, phrase in _PHRASES
            if self.holding(flag)
        ]
        return "; ".join(verdicts) or HEALTHY


@dataclass(frozen=True)
class EndpointHealth:
    """One endpoint (a workload's address and port for one service port)."""

    service: ServiceKey
    port: int
    """The service port."""
    address: str
    endpoint_port: int
    workload: WorkloadRef | None
    """None for an endpoint callers still have that the mesh no longer names."""
    views: CallerViews


@dataclass(frozen=True)
class WorkloadHealth:
    workload: WorkloadRef
    views: CallerViews
    """Over all its endpoints: a caller counts once, with every verdict it holds
    against any of them."""


@dataclass(frozen=True)
class CallerReport:
    """A proxy that was asked, and why it did not answer (``error``), if it did not."""

    caller: WorkloadRef
    kind: str
    admin: str
    error: str | None


@dataclass(frozen=True)
class EndpointHealthReport:
    mesh_version: int
    callers: tuple[CallerReport, ...]
    endpoints: tuple[EndpointHealth, ...]
    workloads: tuple[WorkloadHealth, ...]


async def endpoint_health(
    state: MeshState, proxies: Iterable[ProxyAdmin], timeout_s: float = ADMIN_TIMEOUT_S
) -> EndpointHealthReport:
    """Ask every proxy's Envoy for its clusters, concurrently, and count its verdicts
    on every endpoint of ``state``."""
    return aggregate(state, await ask_all(proxies, CLUSTERS_PATH, timeout_s))


_EndpointKey = tuple[ServiceKey, int, str, int]
"""(service, service port, address, endpoint port)."""


def aggregate(state: MeshState, answers: Sequence[AdminAnswer]) -> EndpointHealthReport:
    """Every endpoint of ``state`` (and any other a caller still has), with what the
    callers that answered think of it; then the same per workload."""
    seen: dict[_EndpointKey, dict[str, frozenset[HealthFlag]]] = defaultdict(dict)
    for answer in answers:
        if answer.body is None:
            continue
        caller = str(answer.proxy.ref)
        for host in outbound_hosts(answer.body):
            if host.service not in state.services:
                continue
            key = (host.service, host.port, host.address, host.endpoint_port)
            # A caller has an endpoint once per cluster of its service port (subsets).
            seen[key][caller] = seen[key].get(caller, frozenset()) | host.flags

    owners = _endpoint_owners(state)
    endpoints = [
        EndpointHealth(*key, owners.get(key), CallerViews.of(seen.get(key, {})))
        for key in sorted(owners.keys() | seen.keys())
    ]
    per_workload: dict[WorkloadRef, dict[str, frozenset[HealthFlag]]] = {
        WorkloadRef(name, namespace): {} for name, namespace in state.workloads
    }
    for key, callers in seen.items():
        owner = owners.get(key)
        if owner is None:
            continue
        merged = per_workload.setdefault(owner, {})
        for caller, flags in callers.items():
            merged[caller] = merged.get(caller, frozenset()) | flags
    return EndpointHealthReport(
        mesh_version=state.version,
        callers=tuple(
            CallerReport(a.proxy.ref, a.proxy.kind, a.proxy.url, a.error) for a in answers
        ),
        endpoints=tuple(endpoints),
        workloads=tuple(
            WorkloadHealth(ref, CallerViews.of(callers))
            for ref, callers in sorted(per_workload.items())
        ),
    )


def _endpoint_owners(state: MeshState) -> dict[_EndpointKey, WorkloadRef]:
    """Every endpoint the mesh names, with its workload: per service port, each
    workload serving the service at its port of the same name."""
    owners: dict[_EndpointKey, WorkloadRef] = {}
    for key, service in state.services.items():
        for workload in state.workloads_of(key):
            endpoint_ports = {wp.name: wp.port for wp in workload.ports}
            for port in service.ports:
                endpoint_port = endpoint_ports.get(port.port_name)
                if endpoint_port is not None:
                    address = normalized_address(workload.address)
                    ref = WorkloadRef(workload.name, workload.namespace or key.namespace)
                    owners[(key, port.port, address, endpoint_port)] = ref
    return owners
