"""Kubernetes-form documents (``apiVersion``, ``kind``, ``metadata``, ``spec``) into typed
policies: the same objects a user applies with ``kubectl`` on a cluster.

Each problem names the document (where it is, its kind and name) and the field path
within it, such as ``routes.yaml document 2 (HTTPRoute default/reviews)
spec.rules[0].backendRefs[0].weight``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from sidemesh.errors import Problem
from sidemesh.model.policy.authentication import RequestAuthentication
from sidemesh.model.policy.authorization import AuthorizationPolicy
from sidemesh.model.policy.backend import BackendPolicy, FaultInjection
from sidemesh.model.policy.external import ExternalService
from sidemesh.model.policy.gateway import APIGateway
from sidemesh.model.policy.routes import GRPCRoute, HTTPRoute
from sidemesh.model.policy.telemetry import Telemetry

Policy = (
    HTTPRoute
    | GRPCRoute
    | BackendPolicy
    | FaultInjection
    | ExternalService
    | APIGateway
    | AuthorizationPolicy
    | RequestAuthentication
    | Telemetry
)

KINDS: dict[tuple[str, str], type[Policy]] = {
    ("gateway.networking.k8s.io", "HTTPRoute"): HTTPRoute,
    ("gateway.networking.k8s.io", "GRPCRoute"): GRPCRoute,
    ("gateway.networking.k8s.io", "Gateway"): APIGateway,
    ("sidemesh.io", "BackendPolicy"): BackendPolicy,
    ("sidemesh.io", "FaultInjection"): FaultInjection,
    ("sidemesh.io", "ExternalService"): ExternalService,
    ("sidemesh.io", "AuthorizationPolicy"): AuthorizationPolicy,
    ("sidemesh.io", "RequestAuthentication"): RequestAuthentication,
    ("sidemesh.io", "Telemetry"): Telemetry,
}


@dataclass(frozen=True)
class Policies:
    """Every policy document of a mesh, namespaces filled in, in the order written."""

    http_routes: tuple[HTTPRoute, ...] = ()
    grpc_routes: tuple[GRPCRoute, ...] = ()
    backend_policies: tuple[BackendPolicy, ...] = ()
    fault_injections: tuple[FaultInjection, ...] = ()
    external_services: tuple[ExternalService, ...] = ()
    gateways: tuple[APIGateway, ...] = ()
    authorization_policies: tuple[AuthorizationPolicy, ...] = ()
    request_authentications: tuple[RequestAuthentication, ...] = ()
    telemetry: tuple[Telemetry, ...] = ()

    @classmethod
    def of(cls, policies: Iterable[Policy]) -> Policies:
        """``policies`` sorted by kind, in the order given."""
        items = list(policies)
        return cls(
            http_routes=tuple(p for p in items if isinstance(p, HTTPRoute)),
            grpc_routes=tuple(p for p in items if isinstance(p, GRPCRoute)),
            backend_policies=tuple(p for p in items if isinstance(p, BackendPolicy)),
            fault_injections=tuple(p for p in items if isinstance(p, FaultInjection)),
            external_services=tuple(p for p in items if isinstance(p, ExternalService)),
            gateways=tuple(p for p in items if isinstance(p, APIGateway)),
            authorization_policies=tuple(p for p in items if isinstance(p, AuthorizationPolicy)),
            request_authentications=tuple(p for p in items if isinstance(p, RequestAuthentication)),
            telemetry=tuple(p for p in items if isinstance(p, Telemetry)),
        )

    def __iter__(self) -> Iterator[Policy]:
        yield from self.http_routes
        yield from self.grpc_routes
        yield from self.backend_policies
        yield from self.fault_injections
        yield from self.external_services
        yield from self.gateways
        yield from self.authorization_policies
        yield from self.request_authentications
        yield from self.telemetry

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def gateway(self, namespace: str, name: str) -> APIGateway | None:
        for gateway in self.gateways:
            if gateway.metadata.namespace == namespace and gateway.metadata.name == name:
                return gateway
        return None

    def fault(self, namespace: str, name: str) -> FaultInjection | None:
        for fault in self.fault_injections:
            if fault.metadata.namespace == namespace and fault.metadata.name == name:
                return fault
        return None

    @classmethod
    def union(cls, each: Iterable[Policies]) -> tuple[Policies, list[str]]:
        """Every policy of every set, the first set's winning where two hold the same
        kind, namespace and name; and a line for each such clash."""
        kept: dict[tuple[str, str, str], Policy] = {}
        clashes = []
        for policies in each:
            for policy in policies:
                key = _key(policy)
                if key not in kept:
                    kept[key] = policy
                elif kept[key] != policy:
                    clashes.append(f"{describe(policy)} differs between sources; the first is used")
        return cls.of(kept.values()), clashes

    def reuse_unchanged(self, previous: Policies) -> Policies:
        """These policies with each one equal to one in ``previous`` replaced by that
        very object (translation keys its work on them)."""
        before = {_key(p): p for p in previous}

        def same(items: Sequence[Any]) -> tuple[Any, ...]:
            return tuple(before.get(_key(p), p) if before.get(_key(p)) == p else p for p in items)

        return Policies(
            http_routes=same(self.http_routes),
            grpc_routes=same(self.grpc_routes),
            backend_policies=same(self.backend_policies),
            fault_injections=same(self.fault_injections),
            external_services=same(self.external_services),
            gateways=same(self.gateways),
            authorization_policies=same(self.authorization_policies),
            request_authentications=same(self.request_authentications),
            telemetry=same(self.telemetry),
        )


def _key(policy: Policy) -> tuple[str, str, str]:
    return (policy.kind, policy.metadata.namespace or "", policy.metadata.name)


def describe(policy: Policy) -> str:
    return f"{policy.kind} {policy.metadata.namespace}/{policy.metadata.name}"


@dataclass(frozen=True)
class RawDocument:
    where: str
    """Where it was written, for messages: ``document 2`` or ``routes.yaml document 1``."""
    content: Any


ProblemsFromPydantic = Callable[[list[Any]], list[Problem]]


@dataclass(frozen=True)
class ParsedPolicies:
    policies: Policies
    problems: list[Problem]
    where: dict[int, str]
    """id(policy) → how messages name it: ``document 2 (HTTPRoute default/reviews)``."""


def parse_policies(
    documents: Sequence[RawDocument],
    default_namespace: str,
    problems_from_pydantic: ProblemsFromPydantic,
) -> ParsedPolicies:
    """Typed policies, and a problem for each document that is not one."""
    problems: list[Problem] = []
    parsed: list[tuple[str, Policy]] = []
    for doc in documents:
        policy = _parse_one(doc, default_namespace, problems_from_pydantic, problems)
        if policy is not None:
            parsed.append((doc.where, policy))
    seen: dict[tuple[str, str, str], str] = {}
    for where, policy in parsed:
        key = _key(policy)
        if key in seen:
            problems.append(
                Problem(
                    f"{where} metadata.name",
                    f"duplicate {describe(policy)} (also {seen[key]})",
                )
            )
        seen[key] = where
    return ParsedPolicies(
        Policies.of(p for _, p in parsed),
        problems,
        {id(p): f"{where} ({describe(p)})" for where, p in parsed},
    )


def _parse_one(
    doc: RawDocument,
    default_namespace: str,
    problems_from_pydantic: ProblemsFromPydantic,
    problems: list[Problem],
) -> Policy | None:
    content = doc.content
    if not isinstance(content, dict):
        problems.append(Problem(doc.where, "a policy document must be a mapping"))
        return None
    api_version, kind = content.get("apiVersion"), content.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        problems.append(
            Problem(doc.where, "a policy document needs apiVersion and kind (Kubernetes form)")
        )
        return None
    group = api_version.rpartition("/")[0]
    model = KINDS.get((group, kind))
    if model is None:
        known = ", ".join(f"{k} ({g})" for g, k in KINDS)
        problems.append(
            Problem(
                f"{doc.where} kind",
                f"{kind!r} of {api_version!r} is not a kind sidemesh knows ({known})",
            )
        )
        return None
    name = (
        (content.get("metadata") or {}).get("name")
        if isinstance(content.get("metadata"), dict)
        else None
    )
    label = f"{doc.where} ({kind} {name or '?'})"
    try:
        policy = model.model_validate(content)
    except ValidationError as exc:
        problems.extend(
            Problem(f"{label} {p.path}".rstrip(), p.reason)
            for p in problems_from_pydantic(exc.errors())
        )
        return None
    if policy.metadata.namespace is None:
        meta = policy.metadata.model_copy(update={"namespace": default_namespace})
        policy = policy.model_copy(update={"metadata": meta})
    return policy
