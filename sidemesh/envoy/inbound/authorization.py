"""Authorization on the callee's side: a service's AuthorizationPolicies as Envoy RBAC
filters on its inbound listeners.

Owns: turning policies (already chosen for the service) into RBAC configs, one per
action, in the order they run: AUDIT (logs, decides nothing), DENY (a match is
refused), ALLOW (present if the service has any ALLOW policy, or the mesh's default is
``deny``: a request no policy allows is refused). Each Envoy policy is one rule of one
document, named ``<namespace>/<policy>/rule-<i>``: the name Envoy puts in a denied
request's response details (``rbac_access_denied_matched_policy[...]``), in the access
log and in its per-rule counters, so a 403 always says which rule decided.
Must not: choose which policies apply (the translator does) or read a MeshState.

How the matching is made hard to slip past (see README's path rules): paths are
matched on the path the connection manager has normalized, case-insensitively (an app
that serves ``/ADMIN`` as ``/admin`` cannot be used around a DENY); hosts
case-insensitively with any port and a trailing dot allowed; a header that appears
more than once is matched as the set of its values: a DENY matches if any value
matches, an ALLOW only if every value does, so repeating a header can neither dodge
a DENY nor satisfy an ALLOW.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from envoy.config.core.v3 import address_pb2
from envoy.config.rbac.v3 import rbac_pb2 as rbac_config_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, regex_pb2, string_pb2, value_pb2
from google.protobuf import wrappers_pb2

from sidemesh.envoy.inbound.authentication import JWT_FILTER_NAME, JWT_METADATA_KEY
from sidemesh.model import AuthorizationDefault
from sidemesh.model.policy.authorization import (
    AuthorizationAction,
    AuthorizationPolicy,
    Condition,
    Operation,
    Rule,
    Source,
)
from sidemesh.model.refs import SPIFFE_SCHEME, as_spiffe_uri, namespace_prefix, spiffe_id

Action = rbac_config_pb2.RBAC.Action
DEFAULT_DENY_STAT_PREFIX = "mesh_default_deny"
"""Counters: ``http.<listener>.rbac.<allow|deny|audit|mesh_default_deny>.denied`` and
per rule ``...rbac.<action>.policy.<namespace>/<policy>/rule-<i>.denied``."""

_ORDER = (AuthorizationAction.AUDIT, AuthorizationAction.DENY, AuthorizationAction.ALLOW)
_ENVOY_ACTION = {
    AuthorizationAction.AUDIT: Action.LOG,
    AuthorizationAction.DENY: Action.DENY,
    AuthorizationAction.ALLOW: Action.ALLOW,
}


def rbac_filters(
    policies: Sequence[AuthorizationPolicy],
    default: AuthorizationDefault,
    *,
    service_port: int,
    trust_domain: str,
) -> tuple[rbac_pb2.RBAC, ...]:
    """The RBAC filters of one inbound port of a service, in chain order."""
    out = []
    for action in _ORDER:
        chosen = [p for p in policies if p.spec.action is action]
        if not chosen and not (
            action is AuthorizationAction.ALLOW and default is AuthorizationDefault.DENY
        ):
            continue
        envoy_policies = {
            f"{p.metadata.namespace}/{p.metadata.name}/rule-{i}": _policy(
                rule, p, action, service_port, trust_domain
            )
            for p in sorted(chosen, key=lambda p: (p.metadata.namespace or "", p.metadata.name))
            for i, rule in enumerate(p.spec.rules or ())
        }
        prefix = DEFAULT_DENY_STAT_PREFIX if not chosen else action.value.lower()
        out.append(
            rbac_pb2.RBAC(
                rules=rbac_config_pb2.RBAC(action=_ENVOY_ACTION[action], policies=envoy_policies),
                rules_stat_prefix=prefix,
                track_per_rule_stats=True,
            )
        )
    return tuple(out)


def _policy(
    rule: Rule,
    policy: AuthorizationPolicy,
    action: AuthorizationAction,
    service_port: int,
    trust_domain: str,
) -> rbac_config_pb2.Policy:
    namespace = policy.metadata.namespace or ""
    every = action is AuthorizationAction.ALLOW
    principals = [_or_ids([_source(f.source, namespace, trust_domain) for f in rule.from_])]
    permissions = [_or_rules([_operation(t.operation, service_port) for t in rule.to])]
    for condition in rule.when:
        principal, permission = _condition(condition, every, service_port, trust_domain)
        if principal is not None:
            principals.append(principal)
        if permission is not None:
            permissions.append(permission)
    return rbac_config_pb2.Policy(
        permissions=[_and_rules(permissions)], principals=[_and_ids(principals)]
    )


# --- principals (who) -------------------------------------------------------------------


def spiffe_pattern(value: str, trust_domain: str) -> string_pb2.StringMatcher:
    """A principal as written (``spiffe://td/ns/x/sa/y`` or Istio's ``td/ns/x/sa/y``,
    ``*`` as a prefix or suffix wildcard) as a matcher of a peer's URI SAN."""
    if value == "*":
        return string_pb2.StringMatcher(prefix=SPIFFE_SCHEME)
    if not value.startswith("*"):
        value = as_spiffe_uri(value)
    if value.startswith("*"):
        return string_pb2.StringMatcher(suffix=value[1:])
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=value[:-1])
    return string_pb2.StringMatcher(exact=value)


def _peer(matcher: string_pb2.StringMatcher) -> rbac_config_pb2.Principal:
    return rbac_config_pb2.Principal(
        authenticated=rbac_config_pb2.Principal.Authenticated(principal_name=matcher)
    )


def _source(source: Source, namespace: str, trust_domain: str) -> rbac_config_pb2.Principal:
    parts: list[rbac_config_pb2.Principal] = []

    def field(
        values: Iterable[str], negated: bool, make: Callable[[str], rbac_config_pb2.Principal]
    ) -> None:
        built = [make(v) for v in values]
        if built:
            either = _or_ids(built)
            parts.append(rbac_config_pb2.Principal(not_id=either) if negated else either)

    def principal(value: str) -> rbac_config_pb2.Principal:
        return _peer(spiffe_pattern(value, trust_domain))

    def account(value: str) -> rbac_config_pb2.Principal:
        ns, _, name = value.rpartition("/")
        uri = spiffe_id(trust_domain, ns or namespace, name)
        return _peer(string_pb2.StringMatcher(exact=uri))

    def in_namespace(value: str) -> rbac_config_pb2.Principal:
        return _peer(string_pb2.StringMatcher(prefix=namespace_prefix(trust_domain, value)))

    def ip(value: str) -> rbac_config_pb2.Principal:
        return rbac_config_pb2.Principal(direct_remote_ip=_cidr(value))

    field(source.principals, False, principal)
    field(source.not_principals, True, principal)
    field(source.service_accounts, False, account)
    field(source.not_service_accounts, True, account)
    field(source.namespaces, False, in_namespace)
    field(source.not_namespaces, True, in_namespace)
    field(source.ip_blocks, False, ip)
    field(source.not_ip_blocks, True, ip)
    field(source.request_principals, False, request_principal)
    field(source.not_request_principals, True, request_principal)
    if source.authenticated is not None:
        anyone = _peer(string_pb2.StringMatcher(prefix=SPIFFE_SCHEME))
        parts.append(anyone if source.authenticated else rbac_config_pb2.Principal(not_id=anyone))
    return _and_ids(parts)


def request_principal(value: str) -> rbac_config_pb2.Principal:
    """``<iss>/<sub>`` of a validated token (the issuer may hold slashes: the subject
    is what follows the last one); ``*`` any validated token."""
    if value == "*":
        return _claim(("iss",), value_pb2.ValueMatcher(present_match=True))
    issuer, _, subject = value.rpartition("/")
    return _and_ids(
        [
            _claim(("iss",), _string_value(issuer)),
            _claim(("sub",), _string_value(subject)),
        ]
    )


def _string_value(value: str) -> value_pb2.ValueMatcher:
    if value == "*":
        return value_pb2.ValueMatcher(present_match=True)
    if value.endswith("*"):
        matcher = string_pb2.StringMatcher(prefix=value[:-1])
    elif value.startswith("*"):
        matcher = string_pb2.StringMatcher(suffix=value[1:])
    else:
        matcher = string_pb2.StringMatcher(exact=value)
    return value_pb2.ValueMatcher(string_match=matcher)


def _claim(path: Sequence[str], value: value_pb2.ValueMatcher) -> rbac_config_pb2.Principal:
    return rbac_config_pb2.Principal(
        metadata=metadata_pb2.MetadataMatcher(
            filter=JWT_FILTER_NAME,
            path=[
                metadata_pb2.MetadataMatcher.PathSegment(key=key)
                for key in (JWT_METADATA_KEY, *path)
            ],
            value=value,
        )
    )


def _claim_is(path: Sequence[str], value: str) -> rbac_config_pb2.Principal:
    """A claim that is ``value``, or a list claim that holds it."""
    one = _string_value(value)
    return _or_ids(
        [
            _claim(path, one),
            _claim(path, value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(one_of=one))),
        ]
    )


def _cidr(value: str) -> address_pb2.CidrRange:
    address, _, length = value.partition("/")
    bits = int(length) if length else (128 if ":" in address else 32)
    return address_pb2.CidrRange(
        address_prefix=address, prefix_len=wrappers_pb2.UInt32Value(value=bits)
    )


# --- permissions (what) -------------------------------------------------------------------


def _operation(operation: Operation, service_port: int) -> rbac_config_pb2.Permission:
    parts: list[rbac_config_pb2.Permission] = []

    def field(
        values: Iterable[str], negated: bool, make: Callable[[str], rbac_config_pb2.Permission]
    ) -> None:
        built = [make(v) for v in values]
        if built:
            either = _or_rules(built)
            parts.append(rbac_config_pb2.Permission(not_rule=either) if negated else either)

    field(operation.paths, False, _path)
    field(operation.not_paths, True, _path)
    field(operation.methods, False, _method)
    field(operation.not_methods, True, _method)
    field(operation.hosts, False, _host)
    field(operation.not_hosts, True, _host)
    # A listener serves one service port: a port condition is known here already.
    if operation.ports:
        parts.append(_always(service_port in operation.ports))
    if operation.not_ports:
        parts.append(_always(service_port not in operation.not_ports))
    return _and_rules(parts)


_PARAMS = "(?:;[^/]*)?"
"""Path parameters of a segment (``/admin;x``), which some servers ignore: a rule on
``/admin`` covers ``/admin;x`` too."""


def path_regex(path: str) -> str:
    """A path as written in a policy (exact, ``/prefix/*``, ``*suffix``, or a template
    with ``{name}`` for one segment and ``{**}`` for the rest) as an RE2 pattern over
    the normalized path: case-insensitive, path parameters ignored, and an exact
    path with or without a trailing slash."""
    if path == "*":
        return "^/.*$"
    if path.startswith("*"):
        return f"(?i)^.*{_literal(path[1:])}{_PARAMS}$"
    rest = ".*" if path.endswith("*") else ""
    body = path[:-1] if rest else path
    parts = []
    for segment in body.split("/")[1:]:
        if segment == "{**}":
            parts.append("(?:/.*)?")
        elif segment.startswith("{") and segment.endswith("}"):
            parts.append("/[^/]+")
        elif segment == "" and rest:
            parts.append("/")  # "/admin/*": the slash, then anything
        else:
            parts.append("/" + _literal(segment) + _PARAMS)
    # An exact path also covers itself with a trailing slash, which most servers
    # answer alike.
    return f"(?i)^{''.join(parts)}{rest or '/?'}$"


def _literal(text: str) -> str:
    return re.escape(text)


def path_matcher(path: str) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=path_regex(path)))


def _path(path: str) -> rbac_config_pb2.Permission:
    return rbac_config_pb2.Permission(url_path=path_pb2.PathMatcher(path=path_matcher(path)))


def _method(method: str) -> rbac_config_pb2.Permission:
    return rbac_config_pb2.Permission(
        header=route_components_pb2.HeaderMatcher(
            name=":method", string_match=string_pb2.StringMatcher(exact=method.upper())
        )
    )


def host_regex(host: str) -> str:
    """``host`` as the Host header may carry it: any case, a trailing dot, a port."""
    base = host.lower().rstrip(".")
    body = r"[^:]+\." + re.escape(base[2:]) if base.startswith("*.") else re.escape(base)
    return rf"(?i)^{body}\.?(:[0-9]+)?$"


def _host(host: str) -> rbac_config_pb2.Permission:
    return rbac_config_pb2.Permission(
        header=route_components_pb2.HeaderMatcher(
            name=":authority",
            string_match=string_pb2.StringMatcher(
                safe_regex=regex_pb2.RegexMatcher(regex=host_regex(host))
            ),
        )
    )


# --- conditions (when) ----------------------------------------------------------------------


def _condition(
    condition: Condition, every: bool, service_port: int, trust_domain: str
) -> tuple[rbac_config_pb2.Principal | None, rbac_config_pb2.Permission | None]:
    """As (a principal, a permission): a condition on the caller or on the request.
    ``every``: an ALLOW's condition (all of a repeated header's values must match)."""
    header = condition.header
    if header is not None:
        return None, _header_condition(header, condition, every)
    if condition.key == "destination.port":
        matches = (not condition.values or str(service_port) in condition.values) and (
            str(service_port) not in condition.not_values
        )
        return None, _always(matches)

    claim = condition.claim

    def make(value: str) -> rbac_config_pb2.Principal:
        if claim is not None:
            return _claim_is(claim, value)
        if condition.key == "request.auth.principal":
            return request_principal(value)
        if condition.key == "source.ip":
            return rbac_config_pb2.Principal(direct_remote_ip=_cidr(value))
        if condition.key == "source.namespace":
            return _peer(string_pb2.StringMatcher(prefix=namespace_prefix(trust_domain, value)))
        return _peer(spiffe_pattern(value, trust_domain))

    parts = []
    if condition.values:
        parts.append(_or_ids([make(v) for v in condition.values]))
    if condition.not_values:
        parts.append(
            rbac_config_pb2.Principal(not_id=_or_ids([make(v) for v in condition.not_values]))
        )
    return _and_ids(parts), None


def _value_regex(values: Sequence[str]) -> str:
    """One comma-separated element that is one of ``values`` (``*`` a wildcard)."""
    return "|".join(
        ".*"
        if v == "*"
        else re.escape(v[:-1]) + ".*"
        if v.endswith("*")
        else ".*" + re.escape(v[1:])
        if v.startswith("*")
        else re.escape(v)
        for v in values
    )


def _header_condition(name: str, condition: Condition, every: bool) -> rbac_config_pb2.Permission:
    """Envoy joins a repeated header's values with commas before matching: matched
    here element by element, as a set (see the module docstring)."""

    def matcher(regex: str) -> rbac_config_pb2.Permission:
        return rbac_config_pb2.Permission(
            header=route_components_pb2.HeaderMatcher(
                name=name,
                string_match=string_pb2.StringMatcher(
                    safe_regex=regex_pb2.RegexMatcher(regex=regex)
                ),
            )
        )

    parts = []
    if condition.values:
        one = rf"\s*(?:{_value_regex(condition.values)})\s*"
        parts.append(matcher(f"^{one}(?:,{one})*$" if every else f"^(?:.*,)?{one}(?:,.*)?$"))
    if condition.not_values:
        one = rf"\s*(?:{_value_regex(condition.not_values)})\s*"
        if every:
            # No value is one of them (an absent header has none).
            anyone = matcher(f"^(?:.*,)?{one}(?:,.*)?$")
            parts.append(rbac_config_pb2.Permission(not_rule=anyone))
        else:
            # Some value is not one of them, or the header is absent.
            all_of_them = matcher(f"^{one}(?:,{one})*$")
            parts.append(rbac_config_pb2.Permission(not_rule=all_of_them))
    return _and_rules(parts)


# --- combinators ------------------------------------------------------------------------


def _always(matches: bool) -> rbac_config_pb2.Permission:
    anything = rbac_config_pb2.Permission(any=True)
    return anything if matches else rbac_config_pb2.Permission(not_rule=anything)


def _and_rules(parts: Sequence[rbac_config_pb2.Permission]) -> rbac_config_pb2.Permission:
    if not parts:
        return rbac_config_pb2.Permission(any=True)
    if len(parts) == 1:
        return parts[0]
    return rbac_config_pb2.Permission(and_rules=rbac_config_pb2.Permission.Set(rules=list(parts)))


def _or_rules(parts: Sequence[rbac_config_pb2.Permission]) -> rbac_config_pb2.Permission:
    if not parts:
        return rbac_config_pb2.Permission(any=True)
    if len(parts) == 1:
        return parts[0]
    return rbac_config_pb2.Permission(or_rules=rbac_config_pb2.Permission.Set(rules=list(parts)))


def _and_ids(parts: Sequence[rbac_config_pb2.Principal]) -> rbac_config_pb2.Principal:
    if not parts:
        return rbac_config_pb2.Principal(any=True)
    if len(parts) == 1:
        return parts[0]
    return rbac_config_pb2.Principal(and_ids=rbac_config_pb2.Principal.Set(ids=list(parts)))


def _or_ids(parts: Sequence[rbac_config_pb2.Principal]) -> rbac_config_pb2.Principal:
    if not parts:
        return rbac_config_pb2.Principal(any=True)
    if len(parts) == 1:
        return parts[0]
    return rbac_config_pb2.Principal(or_ids=rbac_config_pb2.Principal.Set(ids=list(parts)))
