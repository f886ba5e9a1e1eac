"""``AuthorizationPolicy`` (``sidemesh.io/v1alpha1``): who may call what, enforced by
the callee's sidecar.

Modelled on Istio's, in the same shape (``action``, ``rules`` of ``from``, ``to`` and
``when``), so its users read it unchanged; what differs is said where it differs.
How policies combine: a DENY that matches wins; then, if the service has any ALLOW
policy, a request that none of them allows is denied; a service with no ALLOW policy
follows the mesh's default (``mesh.authorization.default``: ``allow``, or ``deny``).
AUDIT policies decide nothing: a request they match is logged as audited."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import Field, model_validator

from sidemesh.model.base import Model, PortNumber
from sidemesh.model.policy.common import ObjectMeta, TargetRef


class AuthorizationAction(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    AUDIT = "AUDIT"


class Source(Model):
    """Who calls. Every field given must match (AND); within a field, any value (OR).
    A ``not`` field matches a caller that is none of its values."""

    principals: tuple[str, ...] = ()
    """SPIFFE IDs (``spiffe://td/ns/default/sa/productpage``, or without the scheme as
    Istio writes them); ``*`` as a prefix or suffix wildcard."""
    not_principals: tuple[str, ...] = ()
    service_accounts: tuple[str, ...] = ()
    """``namespace/name`` (or ``name``, in the policy's namespace)."""
    not_service_accounts: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    not_namespaces: tuple[str, ...] = ()
    authenticated: bool | None = None
    """``true``: any caller with a mesh identity (mTLS); ``false``: only callers
    without one (plaintext, to a PERMISSIVE service)."""
    request_principals: tuple[str, ...] = ()
    """``<issuer>/<subject>`` of a validated JWT (RequestAuthentication)."""
    not_request_principals: tuple[str, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    """The peer's address, as CIDRs (``10.0.0.0/8``) or addresses."""
    not_ip_blocks: tuple[str, ...] = ()

    @property
    def needs_identity(self) -> bool:
        """Whether only a caller with a mesh identity can match."""
        return bool(
            self.principals
            or self.service_accounts
            or self.namespaces
            or self.authenticated is True
        )


class From(Model):
    source: Source


class Operation(Model):
    """What is called. As for ``Source``: fields AND, values OR."""

    paths: tuple[str, ...] = ()
    """Exact (``/healthz``), prefix (``/api/*``), suffix (``*.json``), or a template
    (``/users/{id}/orders``: one segment per ``{name}``, ``{**}`` for any rest).
    Matched against the normalized path (see the README's path rules),
    case-insensitively, path parameters (``;x``) and the query string ignored."""
    not_paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    not_methods: tuple[str, ...] = ()
    ports: tuple[PortNumber, ...] = ()
    not_ports: tuple[PortNumber, ...] = ()
    hosts: tuple[str, ...] = ()
    """Host header values, matched case-insensitively, a port or trailing dot ignored."""
    not_hosts: tuple[str, ...] = ()


class To(Model):
    operation: Operation


_HEADER_KEY = re.compile(r"^request\.headers\[([^\]]+)\]$")
_CLAIM_KEY = re.compile(r"^request\.auth\.claims((?:\[[^\]]+\])+)$")
CONDITION_KEYS = (
    "request.headers[<name>]",
    "request.auth.claims[<claim>]",
    "request.auth.principal",
    "source.ip",
    "source.principal",
    "source.namespace",
    "destination.port",
)


class Condition(Model):
    """``key`` one of: ``request.headers[<name>]``, ``request.auth.claims[<claim>]``
    (nested claims as ``[a][b]``; a list claim matches if it holds a value),
    ``request.auth.principal`` (``<iss>/<sub>``), ``source.ip``, ``source.principal``,
    ``source.namespace``, ``destination.port``. Matches if the value is one of
    ``values`` (``*`` wildcards as in paths) and none of ``not_values``."""

    key: str = Field(min_length=1)
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _something(self) -> Condition:
        if not self.values and not self.not_values:
            raise ValueError("a condition needs values or notValues")
        if (
            _HEADER_KEY.match(self.key) is None
            and _CLAIM_KEY.match(self.key) is None
            and self.key not in CONDITION_KEYS
        ):
            raise ValueError(
                f"{self.key!r} is not a condition key (keys: {', '.join(CONDITION_KEYS)})"
            )
        return self

    @property
    def claim(self) -> tuple[str, ...] | None:
        """The claim path a ``request.auth.claims[a][b]`` key names."""
        found = _CLAIM_KEY.match(self.key)
        return tuple(re.findall(r"\[([^\]]+)\]", found.group(1))) if found else None

    @property
    def header(self) -> str | None:
        """The header a ``request.headers[...]`` key names, lower-cased."""
        found = _HEADER_KEY.match(self.key)
        return found.group(1).lower() if found is not None else None


class Rule(Model):
    """A request matches a rule if it matches one of ``from``, one of ``to`` and
    every ``when`` (an empty list matches anything)."""

    from_: tuple[From, ...] = Field(default=(), alias="from")
    to: tuple[To, ...] = ()
    when: tuple[Condition, ...] = ()


class AuthorizationPolicySpec(Model):
    target_refs: tuple[TargetRef, ...] = ()
    """Services it applies to; left out, every service of its namespace."""
    action: AuthorizationAction = AuthorizationAction.ALLOW
    rules: tuple[Rule, ...] | None = None
    """Left out: matches nothing (an ALLOW without rules allows nothing, so denies
    everything not allowed elsewhere). ``[{}]``: matches every request."""


class AuthorizationPolicy(Model):
    api_version: Literal["sidemesh.io/v1alpha1"]
    kind: Literal["AuthorizationPolicy"]
    metadata: ObjectMeta
    spec: AuthorizationPolicySpec
