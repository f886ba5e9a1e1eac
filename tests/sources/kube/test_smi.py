"""SMI objects (TrafficSplit, TrafficTarget, HTTPRouteGroup), for users migrating from
OSM or Traefik Mesh, served as the HTTPRoute and AuthorizationPolicy they mean, with a
warning that SMI is archived and the equivalent to apply instead. Through the
Kubernetes source, against the small API server written for the tests
(``tests/helpers/kube_apiserver.py``; no real one can run on these machines)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sidemesh.sources.kube.smi import path_pattern
from tests.helpers.kube_apiserver import KubeTestServer
from tests.sources.kube.test_source import Running, pod, running, server, service

__all__ = ["running", "server"]  # fixtures


@pytest.mark.parametrize(
    ("regex", "path"),
    [
        ("/api/.*", "/api/*"),
        ("^/healthz$", "/healthz"),
        (".*", ""),
        ("/static.*", "/static*"),
        (".*\\.json", None),  # an escaped dot: not a plain suffix (left out, with a warning)
        (".*/reviews", "*/reviews"),
        ("/users/[0-9]+", None),
    ],
)
def test_path_regexes_become_paths_only_where_they_mean_the_same(
    regex: str, path: str | None
) -> None:
    assert path_pattern(regex) == path


def _group() -> dict[str, Any]:
    return {
        "apiVersion": "specs.smi-spec.io/v1alpha4",
        "kind": "HTTPRouteGroup",
        "metadata": {"name": "reviews-routes", "namespace": "shop"},
        "spec": {
            "matches": [
                {"name": "read", "pathRegex": "/reviews/.*", "methods": ["GET"]},
                {"name": "ids", "pathRegex": "/reviews/[0-9]+", "methods": ["DELETE"]},
            ]
        },
    }


async def test_a_traffic_split_is_served_as_the_httproute_it_means(
    running: Running, server: KubeTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.apply(service("reviews-v2", {"app": "reviews", "version": "v2"}))
    server.apply(
        {
            "apiVersion": "split.smi-spec.io/v1alpha4",
            "kind": "TrafficSplit",
            "metadata": {"name": "canary", "namespace": "shop"},
            "spec": {
                "service": "reviews",
                "backends": [
                    {"service": "reviews", "weight": 90},
                    {"service": "reviews-v2", "weight": 10},
                ],
            },
        }
    )
    with caplog.at_level(logging.WARNING):
        state = await running.until(lambda s: len(s.policies.http_routes) == 1)
    (route,) = state.policies.http_routes
    assert route.metadata.name == "smi-canary"
    assert route.spec.parent_refs[0].name == "reviews"
    assert [(b.name, b.weight) for b in route.spec.rules[0].backend_refs] == [
        ("reviews", 90),
        ("reviews-v2", 10),
    ]
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "TrafficSplit shop/canary: SMI is archived" in said
    assert "kind: HTTPRoute" in said and "gateway.networking.k8s.io/v1" in said


async def test_a_split_with_matches_splits_only_matching_requests(
    running: Running, server: KubeTestServer
) -> None:
    server.apply(service("reviews-v2", {"app": "reviews", "version": "v2"}))
    server.apply(_group())
    server.apply(
        {
            "apiVersion": "split.smi-spec.io/v1alpha4",
            "kind": "TrafficSplit",
            "metadata": {"name": "ab", "namespace": "shop"},
            "spec": {
                "service": "reviews",
                "matches": [{"kind": "HTTPRouteGroup", "name": "reviews-routes"}],
                "backends": [{"service": "reviews-v2", "weight": 100}],
            },
        }
    )
    state = await running.until(lambda s: len(s.policies.http_routes) == 1)
    first, rest = state.policies.http_routes[0].spec.rules
    assert [m.method for m in first.matches] == ["GET", "DELETE"]
    assert [b.name for b in first.backend_refs] == ["reviews-v2"]
    assert [b.name for b in rest.backend_refs] == ["reviews"] and not rest.matches


async def test_a_traffic_target_allows_its_sources_on_the_services_of_its_destination(
    running: Running, server: KubeTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.apply(_group())
    server.apply(
        {
            "apiVersion": "access.smi-spec.io/v1alpha3",
            "kind": "TrafficTarget",
            "metadata": {"name": "productpage-reads-reviews", "namespace": "shop"},
            "spec": {
                "destination": {"kind": "ServiceAccount", "name": "reviews", "namespace": "shop"},
                "sources": [{"kind": "ServiceAccount", "name": "productpage", "namespace": "shop"}],
                "rules": [
                    {"kind": "HTTPRouteGroup", "name": "reviews-routes", "matches": ["read", "ids"]}
                ],
            },
        }
    )
    with caplog.at_level(logging.WARNING):
        state = await running.until(lambda s: len(s.policies.authorization_policies) == 1)
    (policy,) = state.policies.authorization_policies
    assert [t.name for t in policy.spec.target_refs] == ["reviews"]
    (rule,) = policy.spec.rules or ()
    assert rule.from_[0].source.service_accounts == ("shop/productpage",)
    # "ids" is a regex no path can say: left out, allowing less rather than more.
    assert [(t.operation.paths, t.operation.methods) for t in rule.to] == [
        (("/reviews/*",), ("GET",))
    ]
    said = "\n".join(r.getMessage() for r in caplog.records)
    assert "pathRegex '/reviews/[0-9]+' of match 'ids'" in said
    assert "TrafficTarget shop/productpage-reads-reviews: SMI is archived" in said


async def test_a_traffic_target_whose_destination_runs_nowhere_allows_nothing_yet(
    running: Running, server: KubeTestServer
) -> None:
    server.apply(
        {
            "apiVersion": "access.smi-spec.io/v1alpha3",
            "kind": "TrafficTarget",
            "metadata": {"name": "to-ratings", "namespace": "shop"},
            "spec": {
                "destination": {"kind": "ServiceAccount", "name": "ratings"},
                "sources": [{"kind": "ServiceAccount", "name": "reviews"}],
            },
        }
    )
    server.apply(service("ratings", {"app": "ratings"}))
    server.apply(pod("ratings-v1-a", {"app": "ratings"}, "10.1.0.31"))
    state = await running.until(lambda s: len(s.policies.authorization_policies) == 1)
    assert [t.name for t in state.policies.authorization_policies[0].spec.target_refs] == [
        "ratings"
    ]
