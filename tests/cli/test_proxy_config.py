"""proxy-config compares by meaning and shows where the two sides differ."""

from __future__ import annotations

from sidemesh.cli.proxy_config import compare

CLUSTER = {
    "name": "outbound|9080||reviews.default",
    "type": "EDS",
    "connect_timeout": "1s",
    "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}},
}


def test_same_meaning_is_same_even_if_spelled_differently() -> None:
    envoy_form = {
        "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        **CLUSTER,
        "connect_timeout": "1.000s",
    }
    assert compare("clusters", CLUSTER, envoy_form) == ("same", "")


def test_difference_is_shown_as_a_diff() -> None:
    verdict, diff = compare("clusters", CLUSTER, {**CLUSTER, "connect_timeout": "5s"})
    assert verdict == "differs"
    assert '-  "connect_timeout": "1s"' in diff and '+  "connect_timeout": "5s"' in diff
    assert compare("clusters", CLUSTER, None) == ("missing in Envoy", "")
