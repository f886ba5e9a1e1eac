"""mesh.yaml → MeshState: good files load; every bad one names file, field and reason."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sidemesh.errors import ConfigError
from sidemesh.model import MeshState, ServiceKey, load_mesh_file, parse_mesh_document


def _errors(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_mesh_document(textwrap.dedent(text), "mesh.yaml")
    return str(info.value)


def test_multi_service_mesh_is_normalized(multi_service_state: MeshState) -> None:
    state = multi_service_state
    assert ServiceKey("reviews", "other") in state.services
    v1 = state.workload("reviews-v1", "default")
    assert v1 is not None
    assert v1.service_account == "reviews"
    assert [p.name for p in v1.ports] == ["http", "grpc"]
    pp = state.workload("productpage-1", "default")
    assert pp is not None and pp.ports[0].name == "http-9080" and pp.ports[0].app_port == 21002
    assert [w.name for w in state.workloads_of(ServiceKey("reviews", "default"))] == [
        "reviews-v1",
        "reviews-v2",
    ]
    assert state.spiffe_id(v1) == "spiffe://example.org/ns/default/sa/reviews"


def test_bad_protocol_names_file_field_and_choices() -> None:
    message = _errors(
        """
        services:
          - {name: a, ports: [{port: 80}]}
          - {name: b, ports: [{port: 80}]}
          - {name: c, ports: [{port: 80, protocol: htp}]}
        """
    )
    assert message == (
        "mesh.yaml: services[2].ports[0].protocol: 'htp' is not one of http, http2, grpc, tcp"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("services:\n  - {name: a, prots: [{port: 80}]}\n", "services[0].prots: unknown field"),
        ("services:\n  - {name: a}\n", "services[0].ports: required field is missing"),
        (
            "services: [{name: a, ports: [{port: 80}]}]\nworkloads:\n"
            "  - {name: w, service: a, port: 1, appPort: 2, sidecar: {adminPort: 3}}\n",
            "workloads[0].sidecar.adminPort: Envoy's admin has no port any more: it listens "
            "on a Unix socket",
        ),
        (
            "services:\n  - {name: A_b, ports: [{port: 1}]}\n",
            "services[0].name: 'A_b' is not a valid name",
        ),
        (
            "services:\n  - {name: a, ports: [{port: 70000}]}\n",
            "services[0].ports[0].port: Input should be less than or equal to 65535",
        ),
        ("services: [}\n", "mesh.yaml: line 1, column 12: invalid YAML"),
        ("mesh: {}\nmesh: {}\n", "invalid YAML: duplicate key 'mesh'"),
        ("- a\n", "the top level must be a mapping"),
        (
            "services:\n  - {name: a, ports: [{port: 80}]}\n  - {name: a, ports: [{port: 81}]}\n",
            "services[1].name: duplicate service a.default",
        ),
        (
            "services:\n  - {name: a, ports: [{port: 80}, {port: 80, name: x}]}\n",
            "services[0].ports[1].port: duplicate port number 80",
        ),
        (
            "services: [{name: a, ports: [{port: 80}]}]\n"
            "workloads: [{name: w, service: ratingz, port: 1, appPort: 2}]\n",
            "workloads[0].service: 'ratingz' is not a service in namespace 'default' (services: a.default)",
        ),
        (
            "services: [{name: a, ports: [{port: 80}]}]\n"
            "workloads:\n"
            "  - {name: w, service: a, port: 1, appPort: 2}\n"
            "  - {name: w, service: a, port: 3, appPort: 4, sidecar: {outboundPort: 5}}\n",
            "workloads[1].name: duplicate workload 'w' in namespace 'default'",
        ),
        (
            "services: [{name: a, ports: [{port: 80}]}]\n"
            "workloads:\n"
            "  - {name: w1, service: a, port: 1, appPort: 2}\n"
            "  - {name: w2, service: a, port: 1, appPort: 4, sidecar: {outboundPort: 5}}\n",
            "workloads[1].port: port 1 on 127.0.0.1 is already used by workloads[0].port",
        ),
        (
            "services: [{name: a, ports: [{port: 80}]}]\n"
            "workloads:\n"
            "  - {name: w1, service: a, port: 1, appPort: 2}\n"
            "  - {name: w2, service: a, port: 3, appPort: 4}\n",
            "workloads[1].sidecar.outboundPort: port 15001 on 127.0.0.1 is already used by "
            "workloads[0].sidecar.outboundPort",
        ),
        (
            "services: [{name: a, ports: [{port: 80}]}]\n"
            "workloads: [{name: w, service: a, port: 1}]\n",
            "workloads[0].appPort: required field is missing",
        ),
        (
            "services: [{name: a, ports: [{port: 80, name: web}, {port: 81, name: api}]}]\n"
            "workloads: [{name: w, service: a, ports: [{name: wbe, port: 1, appPort: 2}]}]\n",
            "workloads[0].ports[0].name: 'wbe' is not a port of service 'a' (ports: api, web)",
        ),
        (
            "services: [{name: a, ports: [{port: 80, name: web}, {port: 81, name: api}]}]\n"
            "workloads: [{name: w, service: a, port: 1, appPort: 2}]\n",
            "workloads[0].port: service 'a' has 2 ports: list each under 'ports'",
        ),
        ("mesh: {mtls: strict}\n", "mesh.mtls: 'strict' is not one of STRICT, PERMISSIVE, DISABLE"),
    ],
)
def test_bad_documents_are_refused_with_the_field_path(text: str, expected: str) -> None:
    assert expected in _errors(text)


def test_every_problem_is_reported_at_once() -> None:
    message = _errors(
        """
        services:
          - {name: a, ports: [{port: 80, protocol: htp}], colour: red}
        """
    )
    assert "services[0].ports[0].protocol" in message
    assert "services[0].colour: unknown field" in message


def test_load_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("services: [{name: a, ports: [{port: 80, protocol: htp}]}]\n")
    with pytest.raises(ConfigError) as info:
        load_mesh_file(path)
    assert str(info.value).startswith(f"{path}: services[0].ports[0].protocol:")
    with pytest.raises(ConfigError, match="cannot read file"):
        load_mesh_file(tmp_path / "missing.yaml")


@pytest.mark.parametrize("text", ["", "  \n\t\n", "# all commented out\n"])
def test_an_empty_file_is_refused_not_read_as_an_empty_mesh(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_mesh_document(text, "mesh.yaml")
    assert str(info.value).startswith("mesh.yaml: ")
    assert "write `workloads: []`" in str(info.value)


def test_a_mesh_with_no_workloads_is_written_out() -> None:
    state = parse_mesh_document("workloads: []\n", "mesh.yaml")
    assert not state.services and state.mesh.trust_domain == "cluster.local"


def test_an_edit_that_leaves_workloads_out_is_refused_when_they_are_required() -> None:
    text = "services: [{name: a, ports: [{port: 80}]}]\n"
    assert not parse_mesh_document(text, "mesh.yaml").workloads  # a first load may
    with pytest.raises(ConfigError, match=r"workloads: missing: this edit would stop"):
        parse_mesh_document(text, "mesh.yaml", require_workloads=True)
    parse_mesh_document(text + "workloads: []\n", "mesh.yaml", require_workloads=True)
