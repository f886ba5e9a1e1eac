"""Config Envoy rejects, and mesh.yaml edits sidemesh rejects: the mesh keeps serving."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import duration_pb2

from sidemesh.cli import status as status_view
from sidemesh.envoy import ProxyId, ProxyResources, Resource, ResourceType
from tests.helpers.harness import Mesh


def _poll(fn: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


def _all_answer_b1(mesh: Mesh, count: int = 20) -> None:
    answers: Counter[str] = Counter()
    for _ in range(count):
        reply = mesh.request("a-1", "b")
        assert reply.status_code == 200, reply.text
        answers[reply.json()["workload"]] += 1
    assert answers == {"b-1": count}


def test_nack_is_reported_and_traffic_keeps_flowing(mesh: Mesh) -> None:
    broken = {"on": False}

    def reject_me(proxy: ProxyId, resources: ProxyResources) -> ProxyResources:
        """When switched on, gives a-1 a cluster Envoy must refuse (negative timeout)."""
        if not broken["on"] or proxy.workload != "a-1":
            return resources
        bad = cluster_pb2.Cluster(
            name="rejected-by-envoy",
            type=cluster_pb2.Cluster.STATIC,
            connect_timeout=duration_pb2.Duration(seconds=-1),
        )
        return resources.with_extra(Resource.of(ResourceType.CLUSTER, bad.name, bad))

    cp = mesh.start_control_plane(hook=reject_me)
    mesh.start_workload("a-1")
    mesh.start_workload("b-1")
    mesh.wait_synced()
    mesh.wait_for_route("a-1", "b")

    broken["on"] = True
    cp.call(cp.control_plane.publisher.republish)
    node = "sidecar~a-1~default"
    clusters = _poll(
        lambda: (
            mesh.proxies()[node]["types"]["clusters"]["lastNack"]
            and mesh.proxies()[node]["types"]["clusters"]
        )
    )
    assert clusters["nacks"] >= 1
    assert "Expected positive duration" in clusters["lastNack"]["error"]
    assert clusters["ackedVersion"] != clusters["sentVersion"]
    assert mesh.proxies()[node]["synced"] is False
    rows = {row["name"]: row for row in status_view.gather(mesh.api_url)["workloads"]}
    assert rows["a-1"]["ready"] is False
    assert rows["a-1"]["reason"].startswith("config rejected: ")
    assert "Expected positive duration" in rows["a-1"]["configRejected"]["error"]
    assert rows["b-1"]["reason"] is None
    metrics = httpx.get(mesh.api_url + "/metrics").text
    assert 'sidemesh_xds_nacks_total{type="clusters"}' in metrics
    assert 'sidemesh_xds_nacks_total{type="clusters"} 0.0' not in metrics
    _all_answer_b1(mesh)

    broken["on"] = False
    cp.call(cp.control_plane.publisher.republish)
    mesh.wait_synced()
    _all_answer_b1(mesh)
    rows = {row["name"]: row for row in status_view.gather(mesh.api_url)["workloads"]}
    assert rows["a-1"]["reason"] is None and rows["a-1"]["synced"] is True


@pytest.mark.parametrize("xds_mode", ["delta"])
def test_bad_edit_is_rejected_and_nothing_is_pushed(
    mesh: Mesh, caplog: pytest.LogCaptureFixture
) -> None:
    mesh.start_control_plane()
    mesh.start_workload("a-1")
    mesh.start_workload("b-1")
    mesh.wait_synced()
    mesh.wait_for_route("a-1", "b")
    sent_before = {
        node: {t: s["sentVersion"] for t, s in p["types"].items()}
        for node, p in mesh.proxies().items()
    }

    good = mesh.path.read_text()
    caplog.set_level(logging.ERROR)
    mesh.write(good.replace("port: 9080", "port: 9080\n    protocol: htp"))
    source = _poll(
        lambda: mesh.api("/v1/state")["source"]["rejectedEdits"] and mesh.api("/v1/state")["source"]
    )
    expected = (
        f"{mesh.path}: services[1].ports[0].protocol: 'htp' is not one of http, http2, grpc, tcp"
    )
    assert source["lastError"] == expected
    assert expected in caplog.text
    assert mesh.api("/v1/state")["version"] == 1
    sent_after = {
        node: {t: s["sentVersion"] for t, s in p["types"].items()}
        for node, p in mesh.proxies().items()
    }
    assert sent_after == sent_before
    _all_answer_b1(mesh)

    # Fixing the file is accepted as the next version.
    mesh.write(good)
    _poll(lambda: mesh.api("/v1/state")["version"] == 2)
    assert mesh.api("/v1/state")["source"]["lastError"] is None
    _all_answer_b1(mesh)
