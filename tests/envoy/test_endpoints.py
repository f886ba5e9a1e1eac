"""One workload's bad endpoint stays its own problem: its service's other endpoints
still reach every caller, in an assignment Envoy accepts."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
from envoy.config.endpoint.v3 import endpoint_pb2

from sidemesh.envoy import ProxyId, ResourceType, Translator
from sidemesh.model import MeshState, WorkloadPort, parse_mesh_document
from tests.helpers.envoy_validate import inline_bootstrap, validate

GOOD_MESH = textwrap.dedent(
    """
    services:
      - {name: a, ports: [{port: 8080}]}
      - {name: b, ports: [{port: 9080}]}
    workloads:
      - {name: a-1, service: a, port: 22001, appPort: 22002,
         sidecar: {outboundPort: 22003}}
      - {name: b-1, service: b, port: 22011, appPort: 22012,
         sidecar: {outboundPort: 22013}}
      - {name: b-2, service: b, port: 22021, appPort: 22022,
         sidecar: {outboundPort: 22023}}
      - {name: b-3, service: b, port: 22031, appPort: 22032,
         sidecar: {outboundPort: 22033}}
      - {name: b-4, service: b, port: 22041, appPort: 22042,
         sidecar: {outboundPort: 22043}}
    """
)


def _state_with_bad_workloads() -> MeshState:
    """b-2, b-3 and b-4 broken the way the loader refuses, set in place behind its back
    (``model_copy`` and ``model_construct`` do not validate), as a buggy source might."""
    state = parse_mesh_document(GOOD_MESH, "mesh.yaml")
    workloads = dict(state.workloads)
    workloads[("b-2", "default")] = workloads[("b-2", "default")].model_copy(
        update={"address": "localhost"}
    )
    workloads[("b-3", "default")] = workloads[("b-3", "default")].model_copy(
        update={"address": "999.1.1.1"}
    )
    b4 = workloads[("b-4", "default")]
    workloads[("b-4", "default")] = b4.model_copy(
        update={"ports": (WorkloadPort.model_construct(name="http-9080", port=70000, app_port=1),)}
    )
    return MeshState(state.version, state.mesh, state.services, workloads, state.gateways)


def test_a_bad_workload_is_left_out_of_its_services_endpoints_and_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="sidemesh.envoy.outbound.endpoints")
    resources = Translator().for_proxy(_state_with_bad_workloads(), ProxyId("a-1", "default"))
    assignment = resources[ResourceType.ENDPOINT]["outbound|9080||b.default"].message
    assert isinstance(assignment, endpoint_pb2.ClusterLoadAssignment)
    endpoints = [lb.endpoint for group in assignment.endpoints for lb in group.lb_endpoints]
    assert [(e.hostname, e.address.socket_address.address) for e in endpoints] == [
        ("b-1", "127.0.0.1")
    ]
    warnings = caplog.text
    assert "workload b-2 of b.default is left out" in warnings
    assert "address 'localhost' is not an IP address" in warnings
    assert "workload b-3 of b.default is left out" in warnings
    assert "address '999.1.1.1' is not an IP address" in warnings
    assert "workload b-4 of b.default is left out" in warnings
    assert "port 70000 is not a port number" in warnings


def test_a_callers_config_beside_a_bad_workload_passes_envoy_validate(tmp_path: Path) -> None:
    resources = Translator().for_proxy(_state_with_bad_workloads(), ProxyId("a-1", "default"))
    validate(inline_bootstrap(resources), tmp_path)


ZONED_MESH = textwrap.dedent(
    """
    services:
      - {name: a, ports: [{port: 8080}]}
      - {name: b, ports: [{port: 9080}]}
    workloads:
      - {name: a-1, service: a, port: 22001, appPort: 22002, sidecar: {outboundPort: 22003},
         labels: {topology.kubernetes.io/region: eu, topology.kubernetes.io/zone: eu-1}}
      - {name: a-2, service: a, port: 22101, appPort: 22102, sidecar: {outboundPort: 22103}}
      - {name: b-1, service: b, port: 22011, appPort: 22012, sidecar: {outboundPort: 22013},
         labels: {topology.kubernetes.io/region: eu, topology.kubernetes.io/zone: eu-1}}
      - {name: b-2, service: b, port: 22021, appPort: 22022, sidecar: {outboundPort: 22023},
         labels: {topology.kubernetes.io/region: eu, topology.kubernetes.io/zone: eu-2}}
      - {name: b-3, service: b, port: 22031, appPort: 22032, sidecar: {outboundPort: 22033},
         labels: {topology.kubernetes.io/region: us, topology.kubernetes.io/zone: us-1}}
    """
)


def _priorities(state: MeshState, caller: str) -> dict[str, int]:
    resources = Translator().for_proxy(state, ProxyId(caller, "default"))
    (assignment,) = [
        r.message
        for r in resources[ResourceType.ENDPOINT].values()
        if r.name.endswith("||b.default")
    ]
    assert isinstance(assignment, endpoint_pb2.ClusterLoadAssignment)
    return {
        lb.endpoint.hostname: group.priority
        for group in assignment.endpoints
        for lb in group.lb_endpoints
    }


def test_a_caller_prefers_its_own_zone_then_its_region_then_the_rest(tmp_path: Path) -> None:
    state = parse_mesh_document(ZONED_MESH, "mesh.yaml")
    assert _priorities(state, "a-1") == {"b-1": 0, "b-2": 1, "b-3": 2}
    # A caller that does not say where it is spreads over every locality.
    assert _priorities(state, "a-2") == {"b-1": 0, "b-2": 0, "b-3": 0}
    validate(inline_bootstrap(Translator().for_proxy(state, ProxyId("a-1", "default"))), tmp_path)


def test_priorities_close_up_when_a_rank_has_no_endpoints() -> None:
    """Nothing in the caller's zone: its region is priority 0 (Envoy wants no gap)."""
    text = ZONED_MESH.replace("zone: eu-1}}\n  - {name: b-2", "zone: eu-3}}\n  - {name: b-2")
    assert text != ZONED_MESH
    state = parse_mesh_document(text, "mesh.yaml")
    assert _priorities(state, "a-1") == {"b-1": 0, "b-2": 0, "b-3": 1}
