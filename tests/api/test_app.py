"""The HTTP API, served by a real uvicorn inside a real control plane."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sidemesh.settings import ControlPlaneSettings
from tests.conftest import MULTI_SERVICE_MESH
from tests.helpers.harness import ControlPlaneThread


@pytest.fixture
def api(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "mesh.yaml"
    path.write_text(MULTI_SERVICE_MESH)
    cp = ControlPlaneThread(ControlPlaneSettings(config=path, xds_port=0, api_port=0, ca_port=0))
    cp.start()
    try:
        yield f"http://127.0.0.1:{cp.control_plane.api_port}"
    finally:
        cp.stop()


def test_healthz(api: str) -> None:
    assert httpx.get(f"{api}/healthz").json() == {"status": "ok", "meshVersion": 1}


def test_state_lists_services_workloads_and_identities(api: str, tmp_path: Path) -> None:
    state = httpx.get(f"{api}/v1/state").json()
    assert state["version"] == 1
    assert {(s["name"], s["namespace"]) for s in state["services"]} >= {
        ("reviews", "default"),
        ("reviews", "other"),
    }
    v1 = next(w for w in state["workloads"] if w["name"] == "reviews-v1")
    assert v1["identity"] == "spiffe://example.org/ns/default/sa/reviews"
    assert v1["ports"][0] == {"name": "http", "port": 21011, "appPort": 21012}
    assert state["source"] == {
        "file": str(tmp_path / "mesh.yaml"),
        "rejectedEdits": 0,
        "lastError": None,
    }


def test_proxies_empty_before_any_sidecar(api: str) -> None:
    assert httpx.get(f"{api}/v1/proxies").json() == {"meshVersion": 1, "proxies": []}


def test_openapi_documents_the_routes(api: str) -> None:
    paths = httpx.get(f"{api}/openapi.json").json()["paths"]
    assert {"/healthz", "/v1/state", "/v1/proxies", "/v1/endpoints"} <= set(paths)


def test_openapi_describes_the_endpoint_health_answer(api: str) -> None:
    schemas = httpx.get(f"{api}/openapi.json").json()["components"]["schemas"]
    fields = schemas["EndpointOut"]["properties"]
    assert {"health", "ejectedBy", "failingHealthCheckBy", "endpointPort"} <= set(fields)
    assert "outlier detection" in fields["health"]["description"]


def test_before_any_sidecar_connects_every_endpoint_is_seen_by_no_caller(api: str) -> None:
    answer = httpx.get(f"{api}/v1/endpoints").json()
    assert answer["meshVersion"] == 1 and answer["callers"] == []
    v2 = [e for e in answer["endpoints"] if e["workload"] == "reviews-v2"]
    assert {(e["address"], e["port"], e["endpointPort"]) for e in v2} == {
        ("127.0.0.2", 9080, 21011),
        ("127.0.0.2", 9090, 21013),
    }
    assert {e["health"] for e in answer["endpoints"]} == {"not seen by any caller"}
    assert len(answer["workloads"]) == 7


def test_unknown_route_is_404(api: str) -> None:
    assert httpx.get(f"{api}/v1/nothing").status_code == 404


def test_prometheus_metrics(api: str) -> None:
    reply = httpx.get(f"{api}/metrics")
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    assert "sidemesh_mesh_version 1.0" in text
    assert "sidemesh_services 6.0" in text
    assert "sidemesh_workloads 7.0" in text
    assert "sidemesh_config_rejected_total 0.0" in text
    assert "sidemesh_xds_unsynced_proxies 0.0" in text
    assert "sidemesh_mesh_version_applied_proxies 0.0" in text
    assert 'sidemesh_xds_push_ack_seconds_bucket{le="+Inf"} 0.0' in text
