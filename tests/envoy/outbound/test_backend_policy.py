"""BackendPolicy settings on a caller's outbound cluster; the defaults every cluster
gets with no policy. (Envoy accepts them: tests/envoy/test_validate.py.)"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2

from sidemesh.envoy.outbound.backend_policy import apply_backend_settings
from sidemesh.model.policy.backend import BackendSettings, OutlierDetection


def _cluster(settings: BackendSettings | None) -> cluster_pb2.Cluster:
    out = cluster_pb2.Cluster(name="outbound|9080||b.default")
    apply_backend_settings(out, settings, "b")
    return out


def test_with_no_policy_a_workload_that_cannot_be_reached_is_ejected_and_answers_are_not() -> None:
    detection = _cluster(None).outlier_detection
    assert detection.split_external_local_origin_errors
    assert detection.consecutive_local_origin_failure.value == 2
    assert detection.enforcing_consecutive_local_origin_failure.value == 100
    # A service whose app answers 500 is not the mesh's to take out of rotation unasked.
    assert detection.enforcing_consecutive_5xx.value == 0
    assert detection.enforcing_consecutive_gateway_failure.value == 0
    assert detection.enforcing_success_rate.value == 0
    assert detection.enforcing_local_origin_success_rate.value == 0
    assert detection.base_ejection_time.seconds == 5
    assert detection.interval.seconds == 1
    assert detection.max_ejection_percent.value == 100


def test_a_policy_adds_ejection_on_answers_and_keeps_the_local_origin_rule() -> None:
    policy = BackendSettings(outlier_detection=OutlierDetection(consecutive_5xx_errors=3))
    detection = _cluster(policy).outlier_detection
    assert detection.consecutive_5xx.value == 3
    assert detection.enforcing_consecutive_5xx.value == 100
    assert detection.enforcing_consecutive_local_origin_failure.value == 100
    assert detection.base_ejection_time.seconds == 30


def test_a_policy_may_turn_the_local_origin_rule_off() -> None:
    policy = BackendSettings(
        outlier_detection=OutlierDetection(consecutive_local_origin_failures=0)
    )
    detection = _cluster(policy).outlier_detection
    assert detection.enforcing_consecutive_local_origin_failure.value == 0
