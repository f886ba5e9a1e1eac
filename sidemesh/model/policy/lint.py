"""Advice on policies that load but are likely not what was meant: what ``sidemesh
check`` adds to the loader's errors and warnings. Each finding says what is wrong and
what to do.

- an AuthorizationPolicy whose rules are left out: matches nothing (a DENY then does
  nothing; an ALLOW refuses every request to its services);
- a rule for callers without an identity (``authenticated: false``) on a STRICT
  service: such a caller never gets past mTLS, so the rule can never match;
- an ALLOW rule that requires no identity on a PERMISSIVE service: it admits plaintext
  callers, which is how a service stays open while it moves into the mesh, and is
  worth knowing about;
- a rule shadowed by another rule of its policy (every request it matches, the other
  matches too: it changes nothing);
- an ALLOW rule that a DENY rule on the same service covers: DENY wins, so it never
  allows anything.

"Covers" is decided conservatively, field by field (a rule's values a subset of the
other's, a missing field matching everything, an exclusion at least as wide, a ``*``
value matching anything): a finding is always right; a rule covered only by the meaning
of paths or address ranges is not reported.
"""

from __future__ import annotations

from typing import Any

from sidemesh.errors import Problem
from sidemesh.model.mesh import MtlsMode
from sidemesh.model.policy.authorization import (
    AuthorizationAction,
    AuthorizationPolicy,
    Condition,
    Operation,
    Rule,
    Source,
)
from sidemesh.model.policy.common import services_targeted
from sidemesh.model.state import MeshState


def lint_policies(state: MeshState, where: dict[int, str] | None = None) -> list[Problem]:
    found: list[Problem] = []
    for policy in state.policies.authorization_policies:
        label = (where or {}).get(id(policy)) or (
            f"AuthorizationPolicy {policy.metadata.namespace}/{policy.metadata.name}"
        )
        action = policy.spec.action
        if policy.spec.rules is None or not policy.spec.rules:
            if action is AuthorizationAction.ALLOW:
                advice = (
                    "has no rules, so it allows nothing and every request to its services is "
                    "refused; if that is meant, say so with a comment, else add rules"
                )
            else:
                advice = f"has no rules, so this {action.value} matches nothing: add rules"
            found.append(Problem(f"{label} spec.rules", advice))
            continue
        for key in services_targeted(policy.metadata, policy.spec.target_refs, state.services):
            mode = state.mtls_mode(state.services[key])
            for i, rule in enumerate(policy.spec.rules):
                at = f"{label} spec.rules[{i}]"
                if mode is MtlsMode.STRICT and _only_without_identity(rule):
                    found.append(
                        Problem(
                            at,
                            f"matches only callers without a mesh identity, but {key} is STRICT: "
                            "they never get past mTLS, so the rule never matches; drop it, or "
                            "make the service PERMISSIVE if plaintext callers are meant",
                        )
                    )
                elif (
                    mode is MtlsMode.PERMISSIVE
                    and action is AuthorizationAction.ALLOW
                    and not _requires_identity(rule)
                ):
                    found.append(
                        Problem(
                            at,
                            f"allows callers without a mesh identity to {key} (PERMISSIVE): "
                            "plaintext callers get in; require principals, namespaces or "
                            "authenticated: true once every caller is in the mesh",
                        )
                    )
    found += _shadowed(state, where or {})
    return found


def _shadowed(state: MeshState, where: dict[int, str]) -> list[Problem]:
    found: list[Problem] = []
    policies = state.policies.authorization_policies

    def label(policy: AuthorizationPolicy) -> str:
        return where.get(id(policy)) or (
            f"AuthorizationPolicy {policy.metadata.namespace}/{policy.metadata.name}"
        )

    for policy in policies:
        rules = policy.spec.rules or ()
        for j, rule in enumerate(rules):
            other = next((i for i, r in enumerate(rules) if i != j and covers(r, rule)), None)
            if other is not None and (other < j or not covers(rule, rules[other])):
                found.append(
                    Problem(
                        f"{label(policy)} spec.rules[{j}]",
                        f"shadowed: rule {other} of the same policy matches every request this "
                        "one does, so it changes nothing; drop it or narrow rule "
                        f"{other}",
                    )
                )
    for allow in (p for p in policies if p.spec.action is AuthorizationAction.ALLOW):
        targets = set(services_targeted(allow.metadata, allow.spec.target_refs, state.services))
        for deny in (p for p in policies if p.spec.action is AuthorizationAction.DENY):
            shared = targets & set(
                services_targeted(deny.metadata, deny.spec.target_refs, state.services)
            )
            if not shared:
                continue
            for j, rule in enumerate(allow.spec.rules or ()):
                k = next((k for k, d in enumerate(deny.spec.rules or ()) if covers(d, rule)), None)
                if k is not None:
                    names = ", ".join(str(key) for key in sorted(shared))
                    found.append(
                        Problem(
                            f"{label(allow)} spec.rules[{j}]",
                            f"never allows anything on {names}: DENY {label(deny)} rule {k} "
                            "matches every request it does, and DENY wins; narrow the DENY "
                            "or drop this rule",
                        )
                    )
    return found


def covers(wide: Rule, narrow: Rule) -> bool:
    """Every request ``narrow`` matches, ``wide`` matches."""
    return (
        _each_covered([f.source for f in wide.from_], [f.source for f in narrow.from_])
        and _each_covered([t.operation for t in wide.to], [t.operation for t in narrow.to])
        and all(any(_condition_covers(w, n) for n in narrow.when) for w in wide.when)
    )


def _each_covered(wide: list[Source] | list[Operation], narrow: list[Any]) -> bool:
    """``from``/``to`` entries are alternatives: none is anything; each of ``narrow``'s
    must be covered by one of ``wide``'s."""
    if not wide:
        return True
    if not narrow:
        return False
    return all(any(_fields_cover(w, n) for w in wide) for n in narrow)


def _fields_cover(wide: Source | Operation, narrow: Source | Operation) -> bool:
    for name in type(wide).model_fields:
        w, n = getattr(wide, name), getattr(narrow, name)
        if name == "authenticated":
            if w is not None and w != n:
                return False
        elif name.startswith("not_"):
            if not set(w) <= set(n):  # it excludes more than the narrow one does
                return False
        elif w and not (n and all(_value_in(v, w) for v in n)):
            return False
    return True


def _value_in(value: Any, allowed: tuple[Any, ...]) -> bool:
    return value in allowed or "*" in allowed


def _condition_covers(wide: Condition, narrow: Condition) -> bool:
    return (
        wide.key == narrow.key
        and (not wide.values or (bool(narrow.values) and set(narrow.values) <= set(wide.values)))
        and set(wide.not_values) <= set(narrow.not_values)
    )


def _requires_identity(rule: Rule) -> bool:
    return bool(rule.from_) and all(f.source.needs_identity for f in rule.from_)


def _only_without_identity(rule: Rule) -> bool:
    return bool(rule.from_) and all(f.source.authenticated is False for f in rule.from_)
