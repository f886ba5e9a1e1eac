"""Advice on policies that load but are likely not what was meant: what ``sidemesh
check`` adds to the loader's errors and warnings. Each finding says what is wrong and
what to do.

- an AuthorizationPolicy whose rules are left out: matches nothing (a DENY then does
  nothing; an ALLOW refuses every request to its services);
- a rule for callers without an identity (``authenticated: false``) on a STRICT
  service: such a caller never gets past mTLS, so the rule can never match;
- an ALLOW rule that requires no identity on a PERMISSIVE service: it admits plaintext
  callers, which is how a service stays open while it moves into the mesh, and is
  worth knowing about.
"""

from __future__ import annotations

from sidemesh.errors import Problem
from sidemesh.model.mesh import MtlsMode
from sidemesh.model.policy.authorization import AuthorizationAction, Rule
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
    return found


def _requires_identity(rule: Rule) -> bool:
    return bool(rule.from_) and all(f.source.needs_identity for f in rule.from_)


def _only_without_identity(rule: Rule) -> bool:
    return bool(rule.from_) and all(f.source.authenticated is False for f in rule.from_)
