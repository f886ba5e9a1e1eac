"""MeshState keeps unchanged objects across versions, so translation can skip them."""

from __future__ import annotations

import json

from sidemesh.model import MeshState, ServiceKey, parse_mesh_document
from tests.conftest import MULTI_SERVICE_MESH


def test_reuse_unchanged_keeps_identity_of_equal_objects(multi_service_state: MeshState) -> None:
    edited = MULTI_SERVICE_MESH.replace("appPort: 21022", "appPort: 21025")
    new = parse_mesh_document(edited, "mesh.yaml", version=2).reuse_unchanged(multi_service_state)
    assert new.version == 2
    key = ServiceKey("reviews", "default")
    assert new.services[key] is multi_service_state.services[key]
    assert (
        new.workloads[("reviews-v1", "default")]
        is multi_service_state.workloads[("reviews-v1", "default")]
    )
    assert (
        new.workloads[("ratings-1", "default")]
        is not multi_service_state.workloads[("ratings-1", "default")]
    )


def test_to_json_lists_identities(multi_service_state: MeshState) -> None:
    data = multi_service_state.to_json()
    assert data["mesh"]["trustDomain"] == "example.org"
    ids = {w["name"]: w["identity"] for w in data["workloads"]}
    assert ids["reviews-other"] == "spiffe://example.org/ns/other/sa/reviews"


def test_a_plan_reads_back_as_an_equal_state(multi_service_state: MeshState) -> None:
    plan = json.loads(json.dumps(multi_service_state.to_plan()))
    again = MeshState.from_plan(plan)
    assert again.version == multi_service_state.version
    assert again.mesh == multi_service_state.mesh
    assert dict(again.services) == dict(multi_service_state.services)
    assert dict(again.workloads) == dict(multi_service_state.workloads)
    assert dict(again.gateways) == dict(multi_service_state.gateways)
