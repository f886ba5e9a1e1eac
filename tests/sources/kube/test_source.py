"""The Kubernetes source, against a small API server written for these tests
(``tests/helpers/kube_apiserver.py``: no real kube-apiserver can run on these machines)
that speaks the real list/watch protocol (resourceVersion, bookmarks, ``410 Gone``,
dropped connections), reached through the real client library (``kubernetes_asyncio``
configured from a kubeconfig file, HTTPS, bearer token)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidemesh.model import MeshState, ServiceKey
from sidemesh.sources import Aggregator
from sidemesh.sources.kube import KubeApi, KubeSource
from tests.helpers.kube_apiserver import KubeTestServer


def service(
    name: str, selector: dict[str, str], port: int = 9080, ns: str = "shop"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": port, "targetPort": port}],
        },
    }


def pod(
    name: str,
    labels: dict[str, str],
    ip: str,
    *,
    ns: str = "shop",
    sa: str | None = None,
    meshed: bool = True,
    ready: bool = True,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels,
            "annotations": {"sidemesh.io/status": "injected"} if meshed else {},
        },
        "spec": {
            "serviceAccountName": sa or labels.get("app", "default"),
            "containers": [{"name": "app", "image": "app:1"}],
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def route(name: str, weights: dict[str, int], parent: str = "reviews") -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": parent, "port": 9080}],
            "rules": [
                {
                    "backendRefs": [
                        {"name": s, "port": 9080, "weight": w} for s, w in weights.items()
                    ]
                }
            ],
        },
    }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KubeTestServer]:
    server = KubeTestServer(tmp_path).start()
    server.apply(service("reviews", {"app": "reviews"}))
    server.apply(service("productpage", {"app": "productpage"}))
    server.apply(pod("reviews-v1-a", {"app": "reviews", "version": "v1"}, "10.1.0.11"))
    server.apply(pod("productpage-v1-a", {"app": "productpage"}, "10.1.0.21"))
    yield server
    server.stop()


class Running:
    def __init__(self, source: KubeSource, aggregator: Aggregator) -> None:
        self.source = source
        self.aggregator = aggregator

    @property
    def state(self) -> MeshState:
        assert self.aggregator.state is not None
        return self.aggregator.state

    async def until(self, check: Callable[[MeshState], bool], timeout: float = 10.0) -> MeshState:
        deadline = asyncio.get_running_loop().time() + timeout
        while not check(self.state):
            assert asyncio.get_running_loop().time() < deadline, "the mesh state never got there"
            await asyncio.sleep(0.02)
        return self.state


@pytest.fixture
async def running(server: KubeTestServer) -> AsyncIterator[Running]:
    api = await KubeApi.connect(kubeconfig=server.kubeconfig())
    aggregator = Aggregator()
    source = KubeSource(api, aggregator.feed("Kubernetes"), mesh={"trustDomain": "example.org"})
    await source.load_initial()
    task = asyncio.create_task(source.watch())
    yield Running(source, aggregator)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await api.close()


def workloads(state: MeshState, service: str) -> set[str]:
    return {w.name for w in state.workloads_of(ServiceKey(service, "shop"))}


async def test_services_and_meshed_pods_become_the_mesh_with_service_account_identities(
    running: Running,
) -> None:
    state = running.state
    assert set(state.services) == {ServiceKey("reviews", "shop"), ServiceKey("productpage", "shop")}
    assert workloads(state, "reviews") == {"reviews-v1-a"}
    workload = state.workload("reviews-v1-a", "shop")
    assert workload is not None and workload.address == "10.1.0.11"
    assert workload.labels == {"app": "reviews", "version": "v1"}
    assert state.identity_of("reviews-v1-a", "shop") == "spiffe://example.org/ns/shop/sa/reviews"


async def test_a_services_cluster_ip_is_an_address_a_captured_sidecar_knows_it_by(
    running: Running, server: KubeTestServer
) -> None:
    """A ClusterIP is what a captured app dials for a TCP service; a headless Service
    ("None") has none."""
    db = service("db", {"app": "db"}, 5432)
    db["spec"]["clusterIP"] = "10.96.0.20"
    db["spec"]["clusterIPs"] = ["10.96.0.20", "fd00::20"]
    headless = service("db-headless", {"app": "db"}, 5432)
    headless["spec"]["clusterIP"] = "None"
    server.apply(db)
    server.apply(headless)
    state = await running.until(lambda s: ServiceKey("db-headless", "shop") in s.services)
    assert state.services[ServiceKey("db", "shop")].addresses == ("10.96.0.20", "fd00::20")
    assert state.services[ServiceKey("db-headless", "shop")].addresses == ()


async def test_pods_come_and_go_and_only_meshed_pods_count(
    running: Running, server: KubeTestServer
) -> None:
    server.apply(pod("reviews-v2-a", {"app": "reviews", "version": "v2"}, "10.1.0.12"))
    server.apply(pod("reviews-plain", {"app": "reviews"}, "10.1.0.14", meshed=False))
    await running.until(lambda s: workloads(s, "reviews") == {"reviews-v1-a", "reviews-v2-a"})
    server.delete("Pod", "shop", "reviews-v1-a")
    await running.until(lambda s: workloads(s, "reviews") == {"reviews-v2-a"})


async def test_a_pods_calls_annotation_is_what_its_sidecar_holds_from_the_start(
    running: Running, server: KubeTestServer
) -> None:
    caller = pod("productpage-b", {"app": "productpage"}, "10.1.0.21")
    caller["metadata"]["annotations"]["sidemesh.io/calls"] = "reviews, productpage.shop"
    server.apply(caller)
    state = await running.until(lambda s: s.workload("productpage-b", "shop") is not None)
    workload = state.workload("productpage-b", "shop")
    assert workload is not None and workload.calls == ("reviews", "productpage.shop")


async def test_a_starting_pod_has_its_identity_but_is_not_called_until_ready(
    running: Running, server: KubeTestServer
) -> None:
    """Its sidecar starts first (a native sidecar, the pod still Pending) and must get
    its certificate and config to become ready: so the pod is a workload at once, but
    an endpoint only once Ready."""
    starting = pod("reviews-v2-b", {"app": "reviews", "version": "v2"}, "10.1.0.13", ready=False)
    starting["status"]["phase"] = "Pending"
    server.apply(starting)
    state = await running.until(lambda s: "reviews-v2-b" in workloads(s, "reviews"))
    workload = state.workload("reviews-v2-b", "shop")
    assert workload is not None and workload.ready is False
    assert state.identity_of("reviews-v2-b", "shop") == "spiffe://example.org/ns/shop/sa/reviews"
    server.apply(pod("reviews-v2-b", {"app": "reviews", "version": "v2"}, "10.1.0.13"))
    state = await running.until(lambda s: s.workload("reviews-v2-b", "shop").ready)  # type: ignore[union-attr]
    unscheduled = pod("reviews-v2-c", {"app": "reviews", "version": "v2"}, "", ready=False)
    unscheduled["status"] = {"phase": "Pending"}
    server.apply(unscheduled)
    server.apply(pod("reviews-v2-d", {"app": "reviews", "version": "v2"}, "10.1.0.15"))
    state = await running.until(lambda s: "reviews-v2-d" in workloads(s, "reviews"))
    assert "reviews-v2-c" not in workloads(state, "reviews"), "no address yet: not a workload"


async def test_a_changed_service_selector_changes_its_workloads(
    running: Running, server: KubeTestServer
) -> None:
    server.apply(pod("reviews-v2-a", {"app": "reviews", "version": "v2"}, "10.1.0.12"))
    server.apply(service("reviews-v2", {"app": "reviews", "version": "v2"}))
    await running.until(lambda s: workloads(s, "reviews-v2") == {"reviews-v2-a"})
    server.apply(service("reviews-v2", {"app": "reviews", "version": "v1"}))
    await running.until(lambda s: workloads(s, "reviews-v2") == {"reviews-v1-a"})


async def test_an_applied_httproute_reaches_the_mesh(
    running: Running, server: KubeTestServer
) -> None:
    server.apply(service("reviews-v2", {"app": "reviews", "version": "v2"}))
    server.apply(route("reviews-canary", {"reviews": 90, "reviews-v2": 10}))
    state = await running.until(lambda s: len(s.policies.http_routes) == 1)
    (applied,) = state.policies.http_routes
    assert applied.metadata.name == "reviews-canary"
    assert [b.weight for b in applied.spec.rules[0].backend_refs] == [90, 10]


async def test_a_malformed_object_is_reported_on_itself_and_left_out_while_the_rest_serves(
    running: Running, server: KubeTestServer
) -> None:
    bad = route("bad-weights", {"reviews": -5})
    server.apply(bad)
    unknown = route("to-nowhere", {"reviews": 1}, parent="no-such-service")
    server.apply(unknown)
    server.apply(route("good", {"reviews": 1}))
    state = await running.until(
        lambda s: [r.metadata.name for r in s.policies.http_routes] == ["good"]
    )
    assert workloads(state, "reviews") == {"reviews-v1-a"}
    reasons = {str(ref): " ".join(why) for ref, why in running.source.bad_objects.items()}
    assert set(reasons) == {"HTTPRoute shop/bad-weights", "HTTPRoute shop/to-nowhere"}
    assert "spec.rules[0].backendRefs[0].weight" in reasons["HTTPRoute shop/bad-weights"]
    assert "no-such-service" in reasons["HTTPRoute shop/to-nowhere"]
    for _ in range(200):
        if len(server.events) >= 2:
            break
        await asyncio.sleep(0.02)
    events = {e["involvedObject"]["name"]: e for e in server.events}
    assert set(events) == {"bad-weights", "to-nowhere"}
    assert events["bad-weights"]["type"] == "Warning"
    assert events["bad-weights"]["involvedObject"]["kind"] == "HTTPRoute"
    assert "weight" in events["bad-weights"]["message"]
    # Fixed, it joins the mesh and is no longer reported.
    server.apply(route("bad-weights", {"reviews": 5}))
    await running.until(lambda s: len(s.policies.http_routes) == 2)
    assert {str(r) for r in running.source.bad_objects} == {"HTTPRoute shop/to-nowhere"}


async def test_a_watch_dropped_mid_stream_resumes_from_its_resource_version(
    running: Running, server: KubeTestServer
) -> None:
    lists = server.list_requests
    await running.until(lambda s: server.open_watches() >= 3 and server.open_watches("Pod") >= 1)
    watches = len(server.watch_requests)
    resume_from = next(
        i for i in running.source.informers if i.resource.kind == "Pod"
    ).resource_version
    server.drop_watches()
    server.apply(pod("reviews-v2-a", {"app": "reviews", "version": "v2"}, "10.1.0.12"))
    await running.until(lambda s: "reviews-v2-a" in workloads(s, "reviews"))
    assert server.list_requests == lists, "a dropped watch resumes; it does not list again"
    assert resume_from in server.watch_requests[watches:]


async def test_a_compacted_resource_version_lists_again(
    running: Running, server: KubeTestServer
) -> None:
    pods = next(i for i in running.source.informers if i.resource.kind == "Pod")
    await running.until(lambda s: server.open_watches() >= 3 and server.open_watches("Pod") >= 1)
    server.compact()
    server.drop_watches()  # the resume now asks for a version the server forgot: 410
    server.apply(pod("reviews-v2-a", {"app": "reviews", "version": "v2"}, "10.1.0.12"))
    await running.until(lambda s: "reviews-v2-a" in workloads(s, "reviews"))
    assert pods.lists == 2


async def test_bookmarks_move_the_resume_point_forward_without_a_change(
    running: Running, server: KubeTestServer
) -> None:
    pods = next(i for i in running.source.informers if i.resource.kind == "Pod")
    version = running.state.version
    await running.until(lambda s: server.open_watches() >= 3 and server.open_watches("Pod") >= 1)
    before = pods.resource_version
    server.bookmark()
    for _ in range(200):
        if pods.resource_version != before:
            break
        await asyncio.sleep(0.02)
    assert int(pods.resource_version or 0) > int(before or 0)
    await asyncio.sleep(0.2)
    assert running.state.version == version, "a bookmark is not a change"


async def test_kinds_the_server_does_not_serve_hold_nothing(running: Running) -> None:
    grpc = next(i for i in running.source.informers if i.resource.kind == "GRPCRoute")
    assert grpc.synced.is_set() and grpc.objects == {}
