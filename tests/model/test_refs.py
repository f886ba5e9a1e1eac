"""References and SPIFFE IDs (sidemesh/model/refs.py): one type, one format."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import sidemesh
from sidemesh.identity import SpiffeId
from sidemesh.identity.tokens import WorkloadRef as TokensWorkloadRef
from sidemesh.model import parse_mesh_document
from sidemesh.model.refs import (
    Ref,
    WorkloadRef,
    parse_spiffe_id,
    spiffe_id,
    trust_domain_prefix,
)
from tests.conftest import MULTI_SERVICE_MESH


def test_a_reference_reads_as_name_dot_namespace() -> None:
    assert str(Ref("reviews-v1", "default")) == "reviews-v1.default"


def test_a_reference_finds_the_workload_it_names_in_a_mesh_state() -> None:
    state = parse_mesh_document(MULTI_SERVICE_MESH, "mesh.yaml")
    ref = WorkloadRef("reviews-other", "other")
    assert state.workloads[ref].name == "reviews-other"
    assert ref in state.workloads


def test_identity_still_offers_the_workload_reference_from_its_old_home() -> None:
    assert TokensWorkloadRef is WorkloadRef is Ref


def test_a_spiffe_id_is_written_and_read_back() -> None:
    uri = spiffe_id("example.org", "default", "reviews")
    assert uri == "spiffe://example.org/ns/default/sa/reviews"
    assert parse_spiffe_id(uri) == ("example.org", "default", "reviews")
    assert uri.startswith(trust_domain_prefix("example.org"))


@pytest.mark.parametrize(
    "uri",
    [
        "spiffe://example.org/ns/default/sa/",
        "spiffe://example.org/ns/default/sa/reviews/extra",
        "https://example.org/ns/default/sa/reviews",
        "spiffe://example.org/sa/reviews",
    ],
)
def test_anything_but_a_spiffe_id_of_the_mesh_form_is_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="is not spiffe://<trust-domain>/ns/<ns>/sa/<sa>"):
        parse_spiffe_id(uri)


def test_identitys_spiffe_id_is_formatted_and_parsed_by_the_one_formatter() -> None:
    parsed = SpiffeId.parse("spiffe://example.org/ns/other/sa/reviews")
    assert parsed == SpiffeId("example.org", "other", "reviews")
    assert parsed.uri == spiffe_id("example.org", "other", "reviews") == str(parsed)


WRITES_A_SPIFFE_ID = re.compile(r"""f?["']spiffe://""")
NOT_YET_SWITCHED = {
    # Owned by work in progress (the policy documents, the envoy/ refactor): each
    # switches to model.refs there; a new file must not join this list.
    "envoy/tls.py",
}


def test_no_module_but_refs_writes_a_spiffe_id_itself() -> None:
    root = Path(sidemesh.__file__).parent
    writers = {
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if WRITES_A_SPIFFE_ID.search(path.read_text(encoding="utf-8"))
    }
    assert writers - NOT_YET_SWITCHED == {"model/refs.py"}
