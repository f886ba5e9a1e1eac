"""Which services a sidecar holds, and why: the outbound side on demand.

A sidecar that speaks delta xDS is not sent the whole mesh. It holds the services its
workload declares (``calls``, its ``upstreams``), those an AuthorizationPolicy names it
as a caller of, and those its app has called: Envoy's ``on_demand`` filter asks for a
Host it has no virtual host for (VHDS, ``outbound-http/<host>``), the request waits,
and the control plane answers with that service's virtual host after its clusters and
endpoints. So a sidecar's config grows with what its workload uses, not with the mesh.

A service the caller may never call is not sent to it: its Host is answered with a
virtual host that refuses every request with 403 and says why, so the app gets an
answer at once, not a hang, and learns nothing of the service's endpoints.

Owns: the reasons a service is held; resolving a Host to a service the way the route
configuration's domains do; whether a caller's identity could ever be let through a
service's AuthorizationPolicies (a conservative answer: "no" only when every request
from it is surely refused, since the callee's RBAC decides each request anyway).
Must not: keep per-proxy state (the publisher keeps what each proxy asked for), or
read anything but the model it is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from envoy.config.core.v3 import base_pb2 as core_base_pb2
from envoy.config.route.v3 import route_components_pb2

from sidemesh.envoy import names
from sidemesh.model import AuthorizationDefault, Service, ServiceKey
from sidemesh.model.policy import AuthorizationPolicy
from sidemesh.model.policy.authorization import AuthorizationAction, Rule, Source
from sidemesh.model.refs import SPIFFE_SCHEME

ALIAS_PREFIX = names.OUTBOUND_ROUTE_CONFIG + "/"
"""How Envoy names a Host it asks for: ``<route configuration>/<host>`` (VHDS)."""
DENIED_STATUS = 403


class Reason(StrEnum):
    """Why a sidecar holds a service (shown by ``sidemesh proxy-config``)."""

    DECLARED = "declared"
    """Its workload names it in ``calls`` or ``upstreams``."""
    POLICY = "policy"
    """An AuthorizationPolicy of the service names the workload's identity as a caller."""
    ON_DEMAND = "on demand"
    """Its app called it; learned at the first request."""
    BACKEND = "backend"
    """A held service's routes send to it (a canary's version, a mirror)."""
    CAPTURED = "captured TCP"
    """A TCP service, held by every captured sidecar: its connections name no Host."""


@dataclass(frozen=True)
class Caller:
    """A calling workload as authorization sees it."""

    principal: str
    """Its SPIFFE ID."""
    namespace: str
    service_account: str


def alias(host: str) -> str:
    """The VHDS name Envoy asks for when a request names ``host``."""
    return ALIAS_PREFIX + host


def route_config_of(name: str) -> str:
    """The route configuration a VHDS name belongs to: the part before the last slash
    (a host has none, a route configuration's name may)."""
    return name.rsplit("/", 1)[0] if "/" in name else name


def host_of(name: str) -> str | None:
    """The Host an on-demand VHDS name asks for; None if the name is not one."""
    if not name.startswith(ALIAS_PREFIX):
        return None
    host = name[len(ALIAS_PREFIX) :]
    return host or None


def resolve_host(
    host: str, caller_namespace: str, services: Mapping[ServiceKey, Service]
) -> ServiceKey | None:
    """The mesh service a Host means to a caller in ``caller_namespace``, as the
    outbound virtual hosts' domains do: ``name`` (its own namespace), ``name.ns``,
    ``name.ns.svc``, each with or without a port; None for any other host."""
    base = host.rsplit(":", 1)[0] if ":" in host else host
    parts = base.lower().rstrip(".").split(".")
    if len(parts) == 1:
        key = ServiceKey(parts[0], caller_namespace)
    elif len(parts) == 2 or (len(parts) == 3 and parts[2] == "svc"):
        key = ServiceKey(parts[0], parts[1])
    else:
        return None
    return key if key in services else None


def serves_host(vhost: route_components_pb2.VirtualHost, host: str) -> bool:
    return host.lower() in vhost.domains


ANCHOR_HOST = "sidemesh.invalid"
"""A name no request uses (RFC 2606 reserves ``.invalid``)."""


def anchor_virtual_host() -> route_components_pb2.VirtualHost:
    """One virtual host every proxy on demand holds from the start, even one that
    holds no service: Envoy ends a VHDS subscription's initial fetch only on an answer
    holding a virtual host (an empty one never reaches it), and until then its
    listeners do not start (a 15 s timeout)."""
    return route_components_pb2.VirtualHost(
        name=ALIAS_PREFIX + ANCHOR_HOST,
        domains=[ANCHOR_HOST],
        routes=[
            route_components_pb2.Route(
                name="none",
                match=route_components_pb2.RouteMatch(prefix="/"),
                direct_response=route_components_pb2.DirectResponseAction(status=404),
            )
        ],
    )


def denied_virtual_host(host: str, service: ServiceKey) -> route_components_pb2.VirtualHost:
    """What a caller that may not call ``service`` gets for ``host``: 403 at once,
    saying why in plain words, and nothing of the service's workloads."""
    return route_components_pb2.VirtualHost(
        name=ALIAS_PREFIX + f"denied|{host}",
        domains=[host.lower()],
        routes=[
            route_components_pb2.Route(
                name="denied",
                match=route_components_pb2.RouteMatch(prefix="/"),
                direct_response=route_components_pb2.DirectResponseAction(
                    status=DENIED_STATUS,
                    body=core_base_pb2.DataSource(
                        inline_string=(
                            f"sidemesh: {service} does not accept calls from this workload "
                            "(its AuthorizationPolicies refuse every request from it)\n"
                        )
                    ),
                ),
            )
        ],
    )


def for_one_host(
    catch_all: route_components_pb2.VirtualHost, host: str
) -> route_components_pb2.VirtualHost:
    """The mesh's catch-all (the way out under ``outboundTrafficPolicy``) for one Host
    that is no mesh service: on demand there is no ``*`` virtual host, which would
    answer every Host the sidecar does not hold yet."""
    vhost = route_components_pb2.VirtualHost()
    vhost.CopyFrom(catch_all)
    vhost.name = ALIAS_PREFIX + f"outside|{host}"
    del vhost.domains[:]
    vhost.domains.append(host.lower())
    return vhost


def may_call(
    caller: Caller,
    policies: Sequence[AuthorizationPolicy],
    default: AuthorizationDefault,
    *,
    mtls: bool = True,
) -> bool:
    """False only if every request ``caller`` could make is refused by the service's
    policies: a DENY rule that surely matches it whatever the request, or ALLOW
    policies (or a ``deny`` default) none of whose rules could ever match it.
    ``mtls``: calls to the service carry the caller's identity (not ``DISABLE``);
    without it the callee sees no identity, so no identity rule is judged here."""
    if not mtls:
        return True
    allows = [p for p in policies if p.spec.action is AuthorizationAction.ALLOW]
    for policy in policies:
        if policy.spec.action is AuthorizationAction.DENY and any(
            _surely_matches_everything(rule, caller, policy.metadata.namespace or "")
            for rule in policy.spec.rules or ()
        ):
            return False
    if not allows:
        return default is not AuthorizationDefault.DENY
    return any(
        _may_match(rule, caller, policy.metadata.namespace or "")
        for policy in allows
        for rule in policy.spec.rules or ()
    )


def names_caller(caller: Caller, policy: AuthorizationPolicy) -> bool:
    """Whether an ALLOW policy names ``caller`` itself (by SPIFFE ID or service
    account, not by namespace or wildcard): the workload is expected to call."""
    if policy.spec.action is not AuthorizationAction.ALLOW:
        return False
    namespace = policy.metadata.namespace or ""
    for rule in policy.spec.rules or ():
        for source in (f.source for f in rule.from_):
            if any(
                "*" not in p and _principal_is(p, caller.principal) for p in source.principals
            ) or any(_account_is(a, caller, namespace) for a in source.service_accounts):
                return True
    return False


def _may_match(rule: Rule, caller: Caller, namespace: str) -> bool:
    if not rule.from_:
        return True
    return any(_source_may_match(f.source, caller, namespace) for f in rule.from_)


def _surely_matches_everything(rule: Rule, caller: Caller, namespace: str) -> bool:
    """The rule matches every request of ``caller``: no ``to`` or ``when`` to narrow
    it, and a source that matches on identity alone."""
    if rule.to or rule.when:
        return False
    if not rule.from_:
        return True
    return any(_source_surely_matches(f.source, caller, namespace) for f in rule.from_)


def _source_may_match(source: Source, caller: Caller, namespace: str) -> bool:
    """False only when the identity fields rule the caller out."""
    if source.principals and not any(_principal_is(p, caller.principal) for p in source.principals):
        return False
    if any(_principal_is(p, caller.principal) for p in source.not_principals):
        return False
    if source.service_accounts and not any(
        _account_is(a, caller, namespace) for a in source.service_accounts
    ):
        return False
    if any(_account_is(a, caller, namespace) for a in source.not_service_accounts):
        return False
    # Namespaces are matched as written, as the callee's RBAC matches them.
    if source.namespaces and caller.namespace not in source.namespaces:
        return False
    if caller.namespace in source.not_namespaces:
        return False
    # A sidecar calls with its identity: a source for plaintext callers never matches.
    return source.authenticated is not False


def _source_surely_matches(source: Source, caller: Caller, namespace: str) -> bool:
    """Matches on identity alone, with nothing (a token, an address) left to chance."""
    undecidable = (
        source.request_principals
        or source.not_request_principals
        or source.ip_blocks
        or source.not_ip_blocks
    )
    return not undecidable and _source_may_match(source, caller, namespace)


def _principal_is(pattern: str, principal: str) -> bool:
    """As the callee's RBAC matches a principal: exact, ``*``, or one ``*`` as a prefix
    or suffix; Istio writes principals without the scheme, and both are accepted."""
    bare = principal.removeprefix(SPIFFE_SCHEME)
    pattern = pattern.removeprefix(SPIFFE_SCHEME)
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return bare.endswith(pattern[1:])
    if pattern.endswith("*"):
        return bare.startswith(pattern[:-1])
    return bare == pattern


def _account_is(account: str, caller: Caller, namespace: str) -> bool:
    ns, _, name = account.rpartition("/")
    return (ns or namespace) == caller.namespace and name == caller.service_account
