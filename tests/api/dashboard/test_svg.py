"""The graph's SVG: health colours by thresholds, edge labels, locks, dashes."""

from __future__ import annotations

from sidemesh.api.dashboard.svg import Health, NodeView, health_of, render, worst


def test_health_follows_the_thresholds_in_the_legend() -> None:
    assert health_of(None) is Health.IDLE
    assert health_of(0.995) is Health.HEALTHY
    assert health_of(0.97) is Health.DEGRADED
    assert health_of(0.5) is Health.FAILING
    assert worst(Health.HEALTHY, Health.DEGRADED, Health.IDLE) is Health.DEGRADED


def test_nodes_and_edges_carry_what_the_page_and_its_tests_read() -> None:
    nodes = [NodeView("a.default", "service", Health.HEALTHY, "1/1 running")]
    nodes.append(NodeView("b.default", "service", Health.FAILING, "0/2 running"))
    edge = {
        "source": "a.default",
        "destination": "b.default",
        "mtls": True,
        "rps": 12.34,
        "successRate": 0.5,
        "p99Ms": 8.2,
    }
    svg = render(nodes, [edge], {("a.default", "b.default")})
    assert svg.startswith("<svg ") and svg.endswith("</svg>")
    assert 'data-id="b.default" data-kind="service" data-health="failing"' in svg
    assert 'data-mtls="true" data-denied="true"' in svg
    assert "12.3 rps · 50.0% · p99 8ms" in svg
    assert 'stroke-dasharray="6 5"' in svg and 'class="lock"' in svg
    assert "0/2 running" in svg
