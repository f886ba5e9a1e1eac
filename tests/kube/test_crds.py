"""The CRDs of sidemesh's kinds: valid Kubernetes (``kubernetes-validate``, the real
schemas, as no API server can run on these machines), structural as the API server
demands, and as strict as the model: documents the model takes are taken, the field
errors it refuses are refused (checked with ``jsonschema`` against each CRD's schema,
read as the API server reads it)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from sidemesh.kube.crds import custom_resource_definitions
from tests.envoy.test_validate import POLICIES
from tests.kube.test_inject import VERSIONS

CRDS = {crd["spec"]["names"]["kind"]: crd for crd in custom_resource_definitions()}


def _schema(kind: str) -> dict[str, Any]:
    schema = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return _as_json_schema(copy.deepcopy(schema), strict=True)


def _as_json_schema(node: dict[str, Any], strict: bool) -> dict[str, Any]:
    """OpenAPI 3.0 as the API server applies it, in JSON Schema terms: ``nullable``
    admits null; strict field validation refuses unknown fields where a schema lists
    its properties."""
    for key in ("properties",):
        for name, child in node.get(key, {}).items():
            node[key][name] = _as_json_schema(child, strict)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _as_json_schema(node[key], strict)
    if node.pop("x-kubernetes-int-or-string", False):
        node["type"] = ["integer", "string"]
    node.pop("x-kubernetes-preserve-unknown-fields", None)
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if node.get(bound) is True:
            node[bound] = node.pop(inclusive)
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    if (
        strict
        and "properties" in node
        and node.get("properties")
        and "metadata" not in node["properties"]
    ):
        node["additionalProperties"] = False
    return node


def _policy_documents() -> Iterator[dict[str, Any]]:
    for doc in yaml.safe_load_all(POLICIES):
        if doc and doc["apiVersion"].startswith("sidemesh.io/"):
            yield doc


@pytest.mark.parametrize("version", VERSIONS)
def test_every_crd_is_valid_kubernetes(version: str) -> None:
    assert set(CRDS) == {
        "BackendPolicy",
        "FaultInjection",
        "ExternalService",
        "AuthorizationPolicy",
        "RequestAuthentication",
        "Telemetry",
    }
    for crd in CRDS.values():
        kubernetes_validate.validate(crd, version, strict=True)


def _structural_problems(node: dict[str, Any], path: str) -> Iterator[str]:
    if "$ref" in node or "$defs" in node or "const" in node:
        yield f"{path}: $ref/$defs/const are not allowed"
    if "type" not in node and not (
        node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
    ):
        yield f"{path}: no type"
    if "properties" in node and "additionalProperties" in node:
        yield f"{path}: properties and additionalProperties together"
    if node.get("type") == "null":
        yield f"{path}: type null"
    for name, child in node.get("properties", {}).items():
        yield from _structural_problems(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from _structural_problems(node[key], f"{path}.{key}")
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            yield f"{path}: {key} (a structural schema would need each branch's fields outside too)"


def test_every_crd_schema_is_structural() -> None:
    for kind, crd in CRDS.items():
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert list(_structural_problems(schema, kind)) == []


def test_every_document_the_model_takes_the_crd_takes() -> None:
    docs = list(_policy_documents())
    kinds = {d["kind"] for d in docs}
    assert kinds >= {"BackendPolicy", "FaultInjection", "ExternalService", "AuthorizationPolicy"}
    for doc in docs:
        jsonschema.validate(doc, _schema(doc["kind"]))


def _fault() -> dict[str, Any]:
    return {
        "apiVersion": "sidemesh.io/v1alpha1",
        "kind": "FaultInjection",
        "metadata": {"name": "flaky"},
        "spec": {"abort": {"httpStatus": 503, "percentage": 10}},
    }


def _authz() -> dict[str, Any]:
    return next(d for d in _policy_documents() if d["kind"] == "AuthorizationPolicy")


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("FaultInjection", lambda d: d["spec"]["abort"].update(httpStatus=99)),
        ("FaultInjection", lambda d: d["spec"]["abort"].update(percentage=101)),
        ("FaultInjection", lambda d: d["spec"]["abort"].pop("httpStatus")),
        ("FaultInjection", lambda d: d["spec"].update(abortt={"httpStatus": 503})),
        ("AuthorizationPolicy", lambda d: d["spec"].update(action="PERMIT")),
        ("AuthorizationPolicy", lambda d: d["spec"].update(rules="everyone")),
    ],
    ids=[
        "status-too-low",
        "percentage-over-100",
        "status-missing",
        "unknown-field",
        "bad-enum",
        "wrong-type",
    ],
)
def test_field_errors_the_model_refuses_the_crd_refuses(kind: str, change: Any) -> None:
    from pydantic import ValidationError

    from sidemesh.model.policy.documents import KINDS

    doc = _fault() if kind == "FaultInjection" else _authz()
    jsonschema.validate(doc, _schema(kind))
    change(doc)
    with pytest.raises(ValidationError):
        KINDS[("sidemesh.io", kind)].model_validate(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, _schema(kind))
