"""Reading Envoy's ``/clusters?format=json``: the hosts of outbound clusters and what
the Envoy thinks of each."""

from __future__ import annotations

from sidemesh.model import ServiceKey
from sidemesh.telemetry import HealthFlag, HostView, outbound_hosts
from sidemesh.telemetry.envoy_clusters import parse_outbound_cluster
from tests.telemetry.envoy_json import clusters, host

B = ServiceKey("b", "default")


def test_an_ejected_host_and_one_failing_its_health_check_are_read_with_their_flags() -> None:
    answer = clusters(
        (
            "outbound|9080||b.default",
            [
                host("127.0.0.1", 21001, "b-1"),
                host("127.0.0.1", 21002, "b-2", failed_outlier_check=True),
                host("127.0.0.1", 21003, "b-3", failed_active_health_check=True),
                host("127.0.0.1", 21004, "b-4", failed_active_degraded_check=True),
            ],
        )
    )
    assert list(outbound_hosts(answer)) == [
        HostView(B, 9080, "127.0.0.1", 21001, frozenset()),
        HostView(B, 9080, "127.0.0.1", 21002, frozenset({HealthFlag.EJECTED})),
        HostView(B, 9080, "127.0.0.1", 21003, frozenset({HealthFlag.FAILING_HEALTH_CHECK})),
        HostView(B, 9080, "127.0.0.1", 21004, frozenset({HealthFlag.DEGRADED})),
    ]


def test_a_host_awaiting_its_first_health_check_has_not_failed_one() -> None:
    # Envoy marks a new host failed until its first check; pending says why.
    new = host("127.0.0.1", 21001, failed_active_health_check=True, pending_active_hc=True)
    (view,) = outbound_hosts(clusters(("outbound|9080||b.default", [new])))
    assert view.flags == {HealthFlag.AWAITING_HEALTH_CHECK}


def test_only_outbound_clusters_of_mesh_services_are_read() -> None:
    answer = clusters(
        ("inbound|9080|b", [host("127.0.0.1", 21002)]),
        ("outbound|443||api.example.com", [host("93.184.216.34", 443)]),
        ("PassthroughCluster", []),
        ("outbound|9080|v1|b.default", [host("::1", 21001)]),
    )
    assert [(h.service, h.port, h.address) for h in outbound_hosts(answer)] == [(B, 9080, "::1")]


def test_a_cluster_name_says_its_service_and_port_or_nothing() -> None:
    assert parse_outbound_cluster("outbound|9080||b.default") == (B, 9080)
    assert parse_outbound_cluster("outbound|9080|v2|b.default") == (B, 9080)
    assert parse_outbound_cluster("outbound|x||b.default") is None
    assert parse_outbound_cluster("outbound|9080||b") is None
    assert parse_outbound_cluster("inbound|9080|b") is None


def test_an_answer_not_shaped_as_envoys_is_skipped_not_trusted() -> None:
    for answer in (None, [], {"cluster_statuses": "x"}, {"cluster_statuses": [1, {"name": 2}]}):
        assert list(outbound_hosts(answer)) == []
    odd_hosts = [
        "x",
        {"address": {"pipe": {"path": "/tmp/s"}}},
        {"address": {"socket_address": {"address": "127.0.0.1", "port_value": "80"}}},
        {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 80}}},
    ]
    (only,) = outbound_hosts(clusters(("outbound|9080||b.default", odd_hosts)))
    assert only == HostView(B, 9080, "127.0.0.1", 80, frozenset())
