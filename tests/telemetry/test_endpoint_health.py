"""Counting the callers' verdicts on each endpoint and each workload, from what their
Envoys answered."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from sidemesh.model import MeshState, ServiceKey, parse_mesh_document
from sidemesh.model.refs import WorkloadRef
from sidemesh.telemetry import AdminAnswer, CallerViews, ProxyAdmin, aggregate
from tests.telemetry.envoy_json import clusters, host

MESH = textwrap.dedent(
    """
    mesh: {trustDomain: test.local}
    services:
      - {name: a, ports: [{port: 8080}]}
      - {name: b, ports: [{port: 9080}]}
      - {name: b-v1, ports: [{port: 9080}], selector: {version: v1}}
    workloads:
      - {name: a-1, service: a, port: 21001, appPort: 21002, sidecar: {outboundPort: 21003}}
      - {name: a-2, service: a, port: 21011, appPort: 21012, sidecar: {outboundPort: 21013}}
      - {name: a-3, service: a, port: 21021, appPort: 21022, sidecar: {outboundPort: 21023}}
      - {name: b-1, service: b, labels: {version: v1}, port: 22001, appPort: 22002, sidecar: {outboundPort: 22003}}
      - {name: b-2, service: b, port: 22011, appPort: 22012, sidecar: {outboundPort: 22013}}
      - {name: b-3, service: b, port: 22021, appPort: 22022, sidecar: {outboundPort: 22023}}
    """
)
B = "outbound|9080||b.default"
B_V1 = "outbound|9080||b-v1.default"


@pytest.fixture
def state() -> MeshState:
    return parse_mesh_document(MESH, "mesh.yaml")


def _b_hosts(**flags_of: dict[str, bool]) -> list[dict[str, Any]]:
    """b's three hosts, with Envoy's flags for those named (``b_3={...}``)."""
    return [
        host("127.0.0.1", port, name, **flags_of.get(name.replace("-", "_"), {}))
        for name, port in (("b-1", 22001), ("b-2", 22011), ("b-3", 22021))
    ]


def _answer(caller: str, body: Any = None, error: str | None = None) -> AdminAnswer:
    proxy = ProxyAdmin(WorkloadRef(caller, "default"), "workload", f"/run/{caller}/admin.sock")
    return AdminAnswer(proxy, body, error)


def _workloads(report: Any) -> dict[str, CallerViews]:
    return {w.workload.name: w.views for w in report.workloads}


EJECTED = {"failed_outlier_check": True}
FAILING = {"failed_active_health_check": True}


def test_an_endpoint_ejected_by_two_of_three_callers_says_so(state: MeshState) -> None:
    report = aggregate(
        state,
        [
            _answer("a-1", clusters((B, _b_hosts(b_3=EJECTED)))),
            _answer("a-2", clusters((B, _b_hosts(b_3=EJECTED)))),
            _answer("a-3", clusters((B, _b_hosts()))),
        ],
    )
    b3 = next(e for e in report.endpoints if e.workload == WorkloadRef("b-3", "default"))
    assert (b3.service, b3.port, b3.address, b3.endpoint_port) == (
        ServiceKey("b", "default"),
        9080,
        "127.0.0.1",
        22021,
    )
    assert b3.views.callers == ("a-1.default", "a-2.default", "a-3.default")
    assert b3.views.ejected_by == ("a-1.default", "a-2.default")
    assert b3.views.health == "ejected by 2 of 3 callers (outlier detection)"
    health = {name: views.health for name, views in _workloads(report).items()}
    assert health["b-1"] == health["b-2"] == "healthy"
    assert health["b-3"] == "ejected by 2 of 3 callers (outlier detection)"


def test_a_caller_that_did_not_answer_is_reported_and_left_out_of_the_counts(
    state: MeshState,
) -> None:
    stuck = "no answer from its Envoy admin (http://127.0.0.1:21014/clusters?format=json) within 1s"
    report = aggregate(
        state,
        [
            _answer("a-1", clusters((B, _b_hosts(b_3=FAILING)))),
            _answer("a-2", error=stuck),
        ],
    )
    assert [(str(c.caller), c.error) for c in report.callers] == [
        ("a-1.default", None),
        ("a-2.default", stuck),
    ]
    assert _workloads(report)["b-3"].health == "failing health check at 1 of 1 callers"


def test_a_workload_counts_each_caller_once_over_the_services_that_select_it(
    state: MeshState,
) -> None:
    # b-1 is in b and, by its label, in b-v1: a-1 ejected it from one of the two.
    b_v1 = [host("127.0.0.1", 22001, "b-1", **EJECTED)]
    report = aggregate(
        state,
        [
            _answer("a-1", clusters((B, _b_hosts()), (B_V1, b_v1))),
            _answer("a-2", clusters((B, _b_hosts()))),
        ],
    )
    b1 = _workloads(report)["b-1"]
    assert b1.callers == ("a-1.default", "a-2.default")
    assert b1.health == "ejected by 1 of 2 callers (outlier detection)"
    by_service = {
        e.service.name: e.views.health
        for e in report.endpoints
        if e.workload and e.workload.name == "b-1"
    }
    assert by_service == {"b": "healthy", "b-v1": "ejected by 1 of 1 callers (outlier detection)"}


def test_an_endpoint_no_caller_has_is_not_seen_by_any_caller(state: MeshState) -> None:
    report = aggregate(state, [_answer("a-1", clusters((B, _b_hosts())))])
    workloads = _workloads(report)
    assert workloads["a-1"].health == "not seen by any caller"
    assert workloads["a-1"].callers == ()
    assert {e.workload.name for e in report.endpoints if e.workload} == {
        "a-1",
        "a-2",
        "a-3",
        "b-1",
        "b-2",
        "b-3",
    }


def test_every_verdict_is_named_in_the_order_that_takes_traffic_away_first(
    state: MeshState,
) -> None:
    report = aggregate(
        state,
        [
            _answer("a-1", clusters((B, _b_hosts(b_3={**FAILING, **EJECTED})))),
            _answer("a-2", clusters((B, _b_hosts(b_3={"failed_active_degraded_check": True})))),
            _answer("a-3", clusters((B, _b_hosts(b_3={**FAILING, "pending_active_hc": True})))),
        ],
    )
    assert _workloads(report)["b-3"].health == (
        "ejected by 1 of 3 callers (outlier detection); "
        "failing health check at 1 of 3 callers; "
        "degraded at 1 of 3 callers (health check); "
        "awaiting its first health check at 1 of 3 callers"
    )


def test_an_endpoint_callers_still_have_that_the_mesh_no_longer_names_is_listed_without_a_workload(
    state: MeshState,
) -> None:
    gone = host("127.0.0.1", 22031, "b-4", **EJECTED)
    report = aggregate(state, [_answer("a-1", clusters((B, [*_b_hosts(), gone])))])
    (orphan,) = [e for e in report.endpoints if e.workload is None]
    assert (orphan.endpoint_port, orphan.views.health) == (
        22031,
        "ejected by 1 of 1 callers (outlier detection)",
    )


def test_a_cluster_of_a_service_the_mesh_does_not_have_is_left_out(state: MeshState) -> None:
    other = ("outbound|9080||c.default", [host("127.0.0.1", 23001, "c-1", **EJECTED)])
    report = aggregate(state, [_answer("a-1", clusters((B, _b_hosts()), other))])
    assert all(e.service.name != "c" for e in report.endpoints)
