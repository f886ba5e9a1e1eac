"""``MeshState``: one immutable, versioned view of the whole mesh.

The aggregator builds it from what the sources give; everything downstream only
reads it. Unchanged services and
workloads keep the very same objects from one state to the next, which lets
translation reuse its earlier work by identity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from sidemesh.model.mesh import Gateway, MeshConfig, MtlsMode, Service, Workload
from sidemesh.model.policy.authentication import RequestAuthentication
from sidemesh.model.policy.authorization import AuthorizationPolicy
from sidemesh.model.policy.common import services_targeted
from sidemesh.model.policy.documents import KINDS, Policies, Policy
from sidemesh.model.refs import ServiceKey, spiffe_id


def service_key(service: Service) -> ServiceKey:
    assert service.namespace is not None, "services in a MeshState have a namespace"
    return ServiceKey(service.name, service.namespace)


def workload_service_key(workload: Workload) -> ServiceKey:
    assert workload.namespace is not None, "workloads in a MeshState have a namespace"
    return ServiceKey(workload.service, workload.namespace)


@dataclass(frozen=True)
class MeshState:
    """All services and workloads, normalized: every namespace, service account and
    workload port list is filled in. Build new states; never mutate one."""

    version: int
    mesh: MeshConfig
    services: Mapping[ServiceKey, Service]
    workloads: Mapping[tuple[str, str], Workload]
    """Keyed by (workload name, namespace)."""
    gateways: Mapping[tuple[str, str], Gateway] = field(default_factory=dict)
    """Keyed by (gateway name, namespace)."""
    policies: Policies = field(default_factory=Policies)
    """Routes, backend policies and faults, namespaces filled in, checked."""
    warnings: tuple[str, ...] = ()
    """What loading accepted but an operator should see (an unresolved backendRef, a
    subset selecting nothing, two routes that conflict), each naming file and field."""
    included_files: tuple[str, ...] = ()
    """The files of policies mesh.yaml includes, and the directories its globs look in:
    a file source watches them too."""
    _by_service: Mapping[ServiceKey, tuple[Workload, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "services", MappingProxyType(dict(self.services)))
        object.__setattr__(self, "workloads", MappingProxyType(dict(self.workloads)))
        object.__setattr__(self, "gateways", MappingProxyType(dict(self.gateways)))
        index: dict[ServiceKey, list[Workload]] = {key: [] for key in self.services}
        for workload in self.workloads.values():
            index.setdefault(workload_service_key(workload), []).append(workload)
        # A selector picks workloads by labels, as a Kubernetes Service picks pods.
        for key, service in self.services.items():
            if service.selector:
                wanted = service.selector.items()
                index[key] += [
                    w
                    for w in self.workloads.values()
                    if w.namespace == key.namespace
                    and wanted <= w.labels.items()
                    and w not in index[key]
                ]
        object.__setattr__(
            self, "_by_service", MappingProxyType({k: tuple(v) for k, v in index.items()})
        )

    @classmethod
    def empty(cls) -> MeshState:
        return cls(version=0, mesh=MeshConfig(), services={}, workloads={})

    def workloads_of(self, key: ServiceKey) -> tuple[Workload, ...]:
        return self._by_service.get(key, ())

    def workload(self, name: str, namespace: str) -> Workload | None:
        return self.workloads.get((name, namespace))

    def mtls_mode(self, service: Service) -> MtlsMode:
        return service.mtls or self.mesh.mtls

    def identities_of(self, key: ServiceKey) -> tuple[str, ...]:
        """SPIFFE IDs of the workloads that serve a service: whom a caller may accept."""
        return tuple(sorted({self.spiffe_id(w) for w in self.workloads_of(key)}))

    def spiffe_id(self, workload: Workload) -> str:
        return self._spiffe_id(workload.namespace or "", workload.service_account or "")

    def _spiffe_id(self, namespace: str, service_account: str) -> str:
        return spiffe_id(self.mesh.trust_domain, namespace, service_account)

    def gateway(self, name: str, namespace: str) -> Gateway | None:
        return self.gateways.get((name, namespace))

    def identity_of(self, name: str, namespace: str) -> str | None:
        """The SPIFFE ID of a workload or gateway, or None if the mesh has neither."""
        workload = self.workload(name, namespace)
        if workload is not None:
            return self.spiffe_id(workload)
        gateway = self.gateway(name, namespace)
        if gateway is not None:
            return self._spiffe_id(namespace, gateway.service_account or "")
        return None

    def reuse_unchanged(self, previous: MeshState) -> MeshState:
        """This state with every service and workload equal to one in ``previous``
        replaced by that very object, so consumers can skip unchanged parts by identity."""
        services = {
            key: _same_or(previous.services.get(key), svc) for key, svc in self.services.items()
        }
        workloads = {
            key: _same_or(previous.workloads.get(key), wl) for key, wl in self.workloads.items()
        }
        mesh = previous.mesh if previous.mesh == self.mesh else self.mesh
        gateways = {
            key: _same_or(previous.gateways.get(key), gw) for key, gw in self.gateways.items()
        }
        policies = self.policies.reuse_unchanged(previous.policies)
        state = MeshState(
            self.version,
            mesh,
            services,
            workloads,
            gateways,
            policies,
            self.warnings,
            self.included_files,
        )
        # A service whose workloads are all the very same objects keeps the very same
        # tuple of them: translation then tells an unchanged service by one identity
        # check, not one per workload.
        before = previous._by_service
        object.__setattr__(
            state,
            "_by_service",
            MappingProxyType(
                {
                    key: _same_members(before.get(key), members)
                    for key, members in state._by_service.items()
                }
            ),
        )
        return state

    def to_plan(self) -> dict[str, Any]:
        """Everything, env values included: what local mode runs (a private file; the
        API shows ``to_json`` instead). ``from_plan`` reads it back."""
        return {
            "version": self.version,
            "mesh": self.mesh.model_dump(mode="json", by_alias=True),
            **{
                kind: [m.model_dump(mode="json", by_alias=True) for m in items.values()]
                for kind, items in (
                    ("services", self.services),
                    ("workloads", self.workloads),
                    ("gateways", self.gateways),
                )
            },
            "policies": [p.model_dump(mode="json", by_alias=True) for p in self.policies],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_plan(cls, data: Mapping[str, Any]) -> MeshState:
        """A state ``to_plan`` wrote (already resolved: it is not checked again)."""
        services = [Service.model_validate(s) for s in data["services"]]
        workloads = [Workload.model_validate(w) for w in data["workloads"]]
        gateways = [Gateway.model_validate(g) for g in data["gateways"]]
        policies = [_policy_from_plan(p) for p in data.get("policies", [])]
        return cls(
            version=int(data["version"]),
            mesh=MeshConfig.model_validate(data["mesh"]),
            services={service_key(s): s for s in services},
            workloads={(w.name, w.namespace or ""): w for w in workloads},
            gateways={(g.name, g.namespace or ""): g for g in gateways},
            policies=Policies.of(policies),
            warnings=tuple(data.get("warnings", ())),
        )

    def _covering(
        self, key: ServiceKey, policies: Sequence[AuthorizationPolicy | RequestAuthentication]
    ) -> list[str]:
        """The names of ``policies`` that apply to the service: of its namespace, naming
        it in ``targetRefs`` or naming no target."""
        return sorted(
            p.metadata.name
            for p in policies
            if services_targeted(p.metadata, p.spec.target_refs, (key,))
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "mesh": self.mesh.model_dump(mode="json", by_alias=True),
            "services": [
                {
                    **s.model_dump(mode="json", by_alias=True, exclude_none=True),
                    # Those naming it and those its selector picks.
                    "workloads": sorted(w.name for w in self.workloads_of(key)),
                    "mtlsMode": self.mtls_mode(s).value,
                    "authorizationPolicies": self._covering(
                        key, self.policies.authorization_policies
                    ),
                    "requestAuthentications": self._covering(
                        key, self.policies.request_authentications
                    ),
                }
                for key, s in self.services.items()
            ],
            "workloads": [
                {
                    # The env may hold secrets expanded from ${VAR}: names only.
                    **w.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"env"}),
                    "env": sorted(w.env),
                    "identity": self.spiffe_id(w),
                }
                for w in self.workloads.values()
            ],
            "gateways": [
                {
                    **g.model_dump(mode="json", by_alias=True, exclude_none=True),
                    "identity": self.identity_of(g.name, g.namespace or ""),
                }
                for g in self.gateways.values()
            ],
            "policies": [
                p.model_dump(mode="json", by_alias=True, exclude_none=True) for p in self.policies
            ],
            "warnings": list(self.warnings),
        }


T = TypeVar("T")


def _policy_from_plan(data: Mapping[str, Any]) -> Policy:
    group = str(data["apiVersion"]).rpartition("/")[0]
    return KINDS[(group, str(data["kind"]))].model_validate(data)


def _same_members(
    old: tuple[Workload, ...] | None, new: tuple[Workload, ...]
) -> tuple[Workload, ...]:
    if (
        old is not None
        and len(old) == len(new)
        and all(a is b for a, b in zip(old, new, strict=True))
    ):
        return old
    return new


def _same_or(old: T | None, new: T) -> T:
    return old if old is not None and old == new else new
