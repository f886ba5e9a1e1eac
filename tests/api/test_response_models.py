"""The typed answers of the routes the CLI and the dashboard read: OpenAPI names a model
for each, and each model carries what the route answered before it was typed, key for
key (a real mesh state, a real snapshot, real golden signals, real local processes)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from google.protobuf import json_format

from sidemesh.api import ApiView, create_app
from sidemesh.api.local import LocalRunOut
from sidemesh.api.proxies import ProxyConfigOut
from sidemesh.api.response import ApiModel
from sidemesh.api.state import SourceOut, StateOut
from sidemesh.api.traffic import GraphOut, StatsOut
from sidemesh.envoy import ResourceType
from sidemesh.local.process import ProcessSpec, ProcessState, Supervised
from sidemesh.local.runner import Member
from sidemesh.model import MeshState, parse_mesh_document
from sidemesh.model.refs import WorkloadRef
from sidemesh.telemetry import Scraper
from sidemesh.telemetry.envoy_stats import Traffic
from sidemesh.telemetry.golden import Edge
from sidemesh.xds import Publisher, StatusBoard
from sidemesh.xds.cache import SnapshotCache
from tests.conftest import MULTI_SERVICE_MESH


def _inserted(text: str, before: str, added: str) -> str:
    assert text.count(before) == 1, before
    return text.replace(before, added + before)


# The shared mesh with a selector service, secrets in an env, and a policy of most kinds.
MESH = (
    _inserted(
        _inserted(
            MULTI_SERVICE_MESH,
            "  - name: db\n",
            "  - name: reviews-v2\n"
            "    ports: [{port: 9080}]\n"
            "    selector: {version: v2}\n"
            "    mtls: PERMISSIVE\n",
        ),
        "    service: db\n",
        "    command: [postgres, -p, '{port}']\n    env: {PGPASSWORD: secret, PGDATA: /pg}\n",
    )
    + """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews-jason}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
    - matches: [{headers: [{name: end-user, value: jason}]}]
      backendRefs: [{name: reviews-v2, port: 9080}]
      timeouts: {request: 2s}
    - backendRefs: [{name: reviews, port: 9080}]
---
apiVersion: sidemesh.io/v1alpha1
kind: BackendPolicy
metadata: {name: ratings}
spec:
  targetRefs: [{name: ratings}]
  connectionPool: {maxRetries: 3}
---
apiVersion: sidemesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: reviews-readers}
spec:
  targetRefs: [{name: reviews}]
  action: ALLOW
  rules:
    - from: [{source: {principals: ["example.org/ns/default/sa/productpage"]}}]
      to: [{operation: {methods: [GET], paths: ["/reviews/*"]}}]
---
apiVersion: sidemesh.io/v1alpha1
kind: ExternalService
metadata: {name: payments}
spec:
  hosts: [payments.example]
  ports: [{port: 80}]
"""
)

NODE = "sidecar~reviews-v1~default"
BOUNDS = (1.0, 5.0, 10.0, 100.0, 1000.0)
PRODUCTPAGE = WorkloadRef("productpage-1", "default")


def _traffic(requests: int, errors: int, under: tuple[int, ...]) -> Traffic:
    return Traffic(
        requests,
        {"2xx": requests - errors, "5xx": errors},
        tuple(zip(BOUNDS, under, strict=True)),
        connections=requests // 10,
        bytes_sent=requests * 200,
        bytes_received=requests * 1500,
    )


@pytest.fixture
def state() -> MeshState:
    return parse_mesh_document(MESH, "mesh.yaml")


@pytest.fixture
def scraper() -> Scraper:
    """Two scrapes 10 s apart: productpage calls reviews (some failing) and a host
    outside the mesh; two replicas of the gateway call productpage."""
    scraper = Scraper(lambda: [], lambda _: "")
    to_reviews = Edge(PRODUCTPAGE, "productpage.default", "reviews.default")
    outside = Edge(PRODUCTPAGE, "productpage.default", "payments.example")
    gateways = [
        Edge(WorkloadRef(f"ingress-{i}", "default"), "ingress.default", "productpage.default")
        for i in (1, 2)
    ]
    start = {
        to_reviews: _traffic(100, 0, (50, 100, 100, 100, 100)),
        outside: _traffic(0, 0, (0,) * 5),
        gateways[0]: _traffic(10, 0, (10,) * 5),
        gateways[1]: _traffic(0, 0, (0,) * 5),
    }
    later = {
        to_reviews: _traffic(300, 20, (50, 150, 200, 290, 300)),
        outside: _traffic(0, 0, (0,) * 5),
        gateways[0]: _traffic(30, 1, (10, 20, 30, 30, 30)),
        gateways[1]: _traffic(15, 0, (5, 15, 15, 15, 15)),
    }
    # The signals are kept by wall-clock time: the window ends now.
    now = time.time()
    scraper.signals.record(now - 10, start)
    scraper.signals.record(now, later)
    scraper.scrapes = 2
    scraper.last_errors = {"sidecar~db-1~default": "timed out after 1.0s"}
    return scraper


def _supervised(name: str, state: ProcessState, restarts: int = 0) -> Supervised:
    process = Supervised(ProcessSpec(name, ["true"], {}, Path("/run"), Path(f"/run/{name}.log")))
    process.state = state
    process.restarts = restarts
    if state is not ProcessState.STOPPED:
        process.process = cast(Any, SimpleNamespace(pid=4000 + len(name)))
    if restarts:
        process.last_exit, process.last_exit_at = -9, 1_700_000_000.25
    return process


@pytest.fixture
def local_status(state: MeshState) -> dict[str, Any]:
    """What ``sidemesh up``'s supervisor writes (read back from its JSON file)."""
    reviews = state.workload("reviews-v1", "default")
    gateway = state.gateway("ingress", "default")
    assert reviews is not None and gateway is not None
    members = [
        Member(
            "reviews-v1",
            "default",
            "workload",
            reviews,
            sidecar=_supervised("reviews-v1-sidecar", ProcessState.RUNNING),
            app=_supervised("reviews-v1", ProcessState.RESTARTING, restarts=2),
            ready=True,
        ),
        Member(
            "ingress",
            "default",
            "gateway",
            gateway,
            sidecar=_supervised("ingress-sidecar", ProcessState.STOPPED),
            error="address 127.0.0.1:21060 is in use",
        ),
    ]
    status = {
        "supervisor": 4242,
        "controlPlane": _supervised("controlplane", ProcessState.RUNNING).to_json(),
        "workloads": [m.to_json() for m in members],
    }
    loaded: dict[str, Any] = json.loads(json.dumps(status))
    return loaded


@pytest.fixture
def client(
    state: MeshState, scraper: Scraper, local_status: dict[str, Any]
) -> Iterator[TestClient]:
    publisher = Publisher(SnapshotCache(), state)
    publisher.proxy_connected(NODE)
    view = ApiView(publisher, StatusBoard(), local_status=lambda: local_status, telemetry=scraper)
    with TestClient(create_app(view)) as client:
        yield client


def _round_trip(model: type[ApiModel], data: Any, exclude_unset: bool = False) -> Any:
    return model.model_validate(data).model_dump(
        mode="json", by_alias=True, exclude_unset=exclude_unset
    )


ROUTES = {
    "/v1/state": "StateOut",
    "/v1/local/workloads": "LocalRunOut",
    "/v1/proxies/{node}/config": "ProxyConfigOut",
    "/v1/stats": "StatsOut",
    "/v1/graph": "GraphOut",
}


@pytest.mark.parametrize(("path", "model"), ROUTES.items())
def test_openapi_names_a_model_for_the_route(client: TestClient, path: str, model: str) -> None:
    spec = client.get("/openapi.json").json()
    answer = spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    assert answer["schema"] == {"$ref": f"#/components/schemas/{model}"}
    schema = spec["components"]["schemas"][model]
    assert schema["properties"] and schema["required"]
    assert "additionalProperties" not in schema


def test_openapi_describes_the_fields_in_camel_case(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"mtlsMode", "authorizationPolicies", "requestAuthentications"} <= set(
        schemas["StateServiceOut"]["properties"]
    )
    assert "never their values" in schemas["StateWorkloadOut"]["properties"]["env"]["description"]
    assert {"HTTPRoute", "AuthorizationPolicy", "MeshConfig", "WorkloadPort"} <= set(schemas)
    unanswered = schemas["StatsOut"]["properties"]["unanswered"]
    assert unanswered["additionalProperties"] == {"type": "string"}
    assert {"successRate", "p99Ms", "sourceService"} <= set(
        schemas["WorkloadSignalsOut"]["properties"]
    )
    assert {"lastExitAt", "restarts"} <= set(schemas["ProcessOut"]["properties"])
    sent = schemas["SentResourceOut"]["properties"]
    assert sent["config"]["type"] == "object"  # the Envoy resource: left open
    assert "protobuf JSON" in sent["config"]["description"]


def test_state_round_trips_through_its_model(state: MeshState) -> None:
    data = state.to_json()
    assert {p["kind"] for p in data["policies"]} == {
        "HTTPRoute",
        "BackendPolicy",
        "AuthorizationPolicy",
        "ExternalService",
    }
    assert _round_trip(StateOut, data, exclude_unset=True) == data
    source = SourceOut(file="/srv/mesh.yaml", rejected_edits=2, last_error="mesh.yaml: bad")
    typed = StateOut.of(state, source).model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert typed == {
        **data,
        "source": {"file": "/srv/mesh.yaml", "rejectedEdits": 2, "lastError": "mesh.yaml: bad"},
    }


def test_state_route_answers_what_the_state_says(client: TestClient, state: MeshState) -> None:
    answer = client.get("/v1/state").json()
    # Nothing added (no source without a file, no empty fields as nulls), nothing lost.
    assert answer == state.to_json()
    db = next(w for w in answer["workloads"] if w["name"] == "db-1")
    assert db["env"] == ["PGDATA", "PGPASSWORD"] and "secret" not in json.dumps(answer)
    productpage = next(s for s in answer["services"] if s["name"] == "productpage")
    assert "mtls" not in productpage and "selector" not in productpage
    selected = next(s for s in answer["services"] if s["name"] == "reviews-v2")
    assert selected["workloads"] == ["reviews-v2"] and selected["mtlsMode"] == "PERMISSIVE"
    assert answer["mesh"]["tracing"]["collector"] is None


def test_local_workloads_round_trip_through_their_model(
    client: TestClient, local_status: dict[str, Any]
) -> None:
    assert _round_trip(LocalRunOut, local_status) == local_status
    answer = client.get("/v1/local/workloads").json()
    assert answer == local_status
    app = answer["workloads"][0]["app"]
    assert app["state"] == "restarting" and app["lastExit"] == -9 and app["restarts"] == 2
    assert answer["workloads"][1]["app"] is None and answer["workloads"][1]["service"] is None


def test_local_workloads_before_the_supervisor_wrote_its_status(state: MeshState) -> None:
    # What the control plane answers until ``up``'s supervisor has written a status.
    fallback = {"workloads": [], "controlPlane": None}
    view = ApiView(Publisher(SnapshotCache(), state), StatusBoard(), local_status=lambda: fallback)
    with TestClient(create_app(view)) as client:
        assert client.get("/v1/local/workloads").json() == fallback
    without = ApiView(Publisher(SnapshotCache(), state), StatusBoard())
    with TestClient(create_app(without)) as client:
        assert client.get("/v1/local/workloads").status_code == 404


def test_proxy_config_round_trips_with_envoys_own_json(client: TestClient) -> None:
    answer = client.get(f"/v1/proxies/{NODE}/config").json()
    assert _round_trip(ProxyConfigOut, answer) == answer
    assert answer["node"] == NODE and answer["stateVersion"] == 1
    assert set(answer["types"]) == {t.short for t in ResourceType}
    cluster = answer["types"]["clusters"]["PassthroughCluster"]
    assert set(cluster) == {"version", "config"}
    # The resource is Envoy's, field names and all, not camelCased.
    assert cluster["config"]["lb_policy"] == "CLUSTER_PROVIDED"
    listeners = answer["types"]["listeners"]
    assert any("filter_chains" in r["config"] for r in listeners.values())
    assert client.get("/v1/proxies/sidecar~nobody~default/config").status_code == 404


def test_proxy_config_is_the_snapshot_sent(state: MeshState) -> None:
    publisher = Publisher(SnapshotCache(), state)
    publisher.proxy_connected(NODE)
    snapshot = publisher.cache.get(NODE)
    assert snapshot is not None
    with TestClient(create_app(ApiView(publisher, StatusBoard()))) as client:
        answer = client.get(f"/v1/proxies/{NODE}/config").json()
    for rtype in ResourceType:
        for name, res in snapshot.resources[rtype].items():
            sent = answer["types"][rtype.short][name]
            assert sent == {
                "version": res.version,
                "config": json_format.MessageToDict(res.message, preserving_proto_field_name=True),
            }


SIGNALS = [
    "requests",
    "rps",
    "successRate",
    "p50Ms",
    "p95Ms",
    "p99Ms",
    "clientErrors",
    "connections",
    "bytesSent",
    "bytesReceived",
]


def test_stats_round_trip_and_keep_their_shape(client: TestClient) -> None:
    answer = client.get("/v1/stats?window=1m").json()
    assert _round_trip(StatsOut, answer) == answer
    assert list(answer) == ["window", "scrapes", "unanswered", "services", "workloads"]
    assert answer["unanswered"] == {"sidecar~db-1~default": "timed out after 1.0s"}
    reviews = next(s for s in answer["services"] if s["service"] == "reviews.default")
    assert list(reviews) == ["service", *SIGNALS]
    assert reviews["requests"] == 200 and reviews["successRate"] == 0.9
    assert reviews["bytesSent"] == 40_000
    edge = next(w for w in answer["workloads"] if w["destination"] == "payments.example")
    assert list(edge) == ["source", "sourceService", "destination", *SIGNALS]
    assert edge["source"] == "productpage-1.default" and edge["successRate"] is None
    assert client.get("/v1/stats?window=2h").status_code == 400


def test_graph_round_trips_and_keeps_its_shape(client: TestClient, state: MeshState) -> None:
    answer = client.get("/v1/graph").json()
    assert _round_trip(GraphOut, answer) == answer
    assert list(answer) == ["window", "nodes", "edges"]
    kinds = {n["id"]: n["kind"] for n in answer["nodes"]}
    assert kinds["payments.example"] == "external" and kinds["ingress.default"] == "gateway"
    assert {str(k) for k in state.services} <= {i for i, k in kinds.items() if k == "service"}
    edge = next(e for e in answer["edges"] if e["source"] == "ingress.default")
    assert list(edge) == ["source", "destination", "mtls", *SIGNALS]
    # Both gateway replicas summed: 20 + 15 requests, one failed.
    assert edge["requests"] == 35 and edge["successRate"] == round(34 / 35, 5)
    assert edge["mtls"] is True


def test_without_telemetry_stats_and_graph_say_so(state: MeshState) -> None:
    view = ApiView(Publisher(SnapshotCache(), state), StatusBoard())
    with TestClient(create_app(view)) as client:
        for path in ("/v1/stats", "/v1/graph"):
            reply = client.get(path)
            assert reply.status_code == 404 and "telemetry is off" in reply.json()["detail"]
