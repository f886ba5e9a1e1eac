"""The analysis behind ``sidemesh check``'s advice on authorization rules: when one rule
covers another (shadowed within a policy, an ALLOW a DENY takes away), decided
conservatively so that a finding is never wrong."""

from __future__ import annotations

from typing import Any

from sidemesh.model.policy.authorization import Rule
from sidemesh.model.policy.lint import covers


def _rule(**fields: Any) -> Rule:
    return Rule.model_validate(fields)


def test_a_rule_without_a_field_covers_one_that_has_it() -> None:
    wide = _rule(**{"from": [{"source": {"namespaces": ["default"]}}]})
    narrow = _rule(
        **{"from": [{"source": {"namespaces": ["default"]}}]},
        to=[{"operation": {"methods": ["GET"]}}],
        when=[{"key": "request.headers[x-team]", "values": ["a"]}],
    )
    assert covers(wide, narrow) and not covers(narrow, wide)


def test_values_must_be_a_subset_and_a_star_matches_anything() -> None:
    wide = _rule(to=[{"operation": {"methods": ["GET", "HEAD"], "hosts": ["*"]}}])
    assert covers(wide, _rule(to=[{"operation": {"methods": ["GET"], "hosts": ["a.local"]}}]))
    assert not covers(wide, _rule(to=[{"operation": {"methods": ["GET", "POST"]}}]))
    assert not covers(wide, _rule(to=[{"operation": {"paths": ["/x"]}}]))  # any method


def test_an_exclusion_must_be_at_least_as_wide_in_the_narrow_rule() -> None:
    wide = _rule(to=[{"operation": {"notPaths": ["/health"]}}])
    assert covers(wide, _rule(to=[{"operation": {"notPaths": ["/health", "/metrics"]}}]))
    assert not covers(wide, _rule(to=[{"operation": {"paths": ["/health"]}}]))


def test_each_alternative_of_the_narrow_rule_needs_a_wider_one() -> None:
    wide = _rule(**{"from": [{"source": {"namespaces": ["a"]}}, {"source": {"namespaces": ["b"]}}]})
    both = _rule(**{"from": [{"source": {"namespaces": ["a"]}}, {"source": {"namespaces": ["b"]}}]})
    other = _rule(
        **{"from": [{"source": {"namespaces": ["a"]}}, {"source": {"namespaces": ["c"]}}]}
    )
    assert covers(wide, both) and not covers(wide, other)
    assert not covers(wide, _rule())  # no "from": any caller
