"""The graph's layered layout: callers left of callees, cycles survived, idle nodes apart."""

from __future__ import annotations

from sidemesh.api.dashboard.layout import layered


def test_callers_are_left_of_callees_and_a_chain_reads_left_to_right() -> None:
    placed = layered(
        ["ratings", "reviews", "productpage", "ingress", "details"],
        [
            ("ingress", "productpage"),
            ("productpage", "details"),
            ("productpage", "reviews"),
            ("reviews", "ratings"),
        ],
    )
    layers = {name: p.layer for name, p in placed.items()}
    assert layers == {"ingress": 0, "productpage": 1, "details": 2, "reviews": 2, "ratings": 3}
    assert placed["ingress"].x < placed["productpage"].x < placed["reviews"].x


def test_a_cycle_does_not_loop_and_idle_nodes_sit_below() -> None:
    placed = layered(["a", "b", "c", "idle"], [("a", "b"), ("b", "c"), ("c", "a")])
    assert sorted(p.layer for n, p in placed.items() if n != "idle") == [0, 1, 2]
    assert placed["idle"].layer == -1
    assert placed["idle"].y > max(p.y for n, p in placed.items() if n != "idle")
