"""CustomResourceDefinitions for sidemesh's own kinds, generated from the same pydantic
models that validate mesh.yaml, so ``kubectl apply`` refuses what mesh.yaml refuses.

Pydantic writes JSON Schema (2020-12); a CRD needs a *structural* OpenAPI v3 schema:
every node typed, no ``$ref``, nullable instead of a ``null`` branch, no ``const``, no
``additionalProperties: false`` beside ``properties`` (the API server's strict field
validation, kubectl's default, refuses unknown fields instead). Where a model accepts
one of several shapes, the schema accepts their union and the validating webhook (the
model itself) says the rest; cross-references (a policy naming a service that does
not exist) are the webhook's too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidemesh.model.policy.documents import KINDS

GROUP = "sidemesh.io"
VERSION = "v1alpha1"
PLURALS = {
    "BackendPolicy": "backendpolicies",
    "FaultInjection": "faultinjections",
    "ExternalService": "externalservices",
    "AuthorizationPolicy": "authorizationpolicies",
    "RequestAuthentication": "requestauthentications",
    "Telemetry": "telemetries",
}
SHORT_NAMES = {
    "BackendPolicy": ["bp"],
    "AuthorizationPolicy": ["authz"],
    "RequestAuthentication": ["reqauthn"],
    "ExternalService": ["extsvc"],
}
_KEPT = {
    "type",
    "properties",
    "items",
    "required",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "description",
    "nullable",
}
_FORMATS = {"int32", "int64", "float", "double", "byte", "date", "date-time", "uri", "ipv4"}


def custom_resource_definitions() -> list[dict[str, Any]]:
    """One CRD per sidemesh kind, in a stable order."""
    return [
        _crd(kind, model.model_json_schema(by_alias=True, mode="validation"))
        for (group, kind), model in KINDS.items()
        if group == GROUP
    ]


def _crd(kind: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    plural = PLURALS[kind]
    defs = schema.get("$defs", {})
    spec = structural(schema["properties"]["spec"], defs)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "sidemesh"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "categories": ["sidemesh"],
                **({"shortNames": SHORT_NAMES[kind]} if kind in SHORT_NAMES else {}),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": f"sidemesh {kind} (the same document mesh.yaml takes)",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                            },
                        }
                    },
                }
            ],
        },
    }


def structural(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    """``node`` (pydantic's JSON Schema) as a structural OpenAPI v3 schema."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return structural(merged, defs)
    if "anyOf" in node or "oneOf" in node:
        return _union(node, defs)
    out: dict[str, Any] = {k: v for k, v in node.items() if k in _KEPT}
    if "const" in node:
        out["enum"] = [node["const"]]
    if node.get("format") in _FORMATS:
        out["format"] = node["format"]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node:  # JSON Schema's number becomes OpenAPI 3.0's flag
            out[inclusive] = node[bound]
            out[bound] = True
    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {k: structural(v, defs) for k, v in node["properties"].items()}
    elif isinstance(node.get("additionalProperties"), Mapping):
        out["type"] = "object"
        out["additionalProperties"] = structural(node["additionalProperties"], defs)
    elif node.get("type") == "object":
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "items" in node:
        out["items"] = structural(node["items"], defs)
    elif "prefixItems" in node:  # a fixed-length tuple: its items' union
        out["items"] = _union({"anyOf": node["prefixItems"]}, defs)
    if out.get("type") == "array" and "items" not in out:
        out["items"] = {"x-kubernetes-preserve-unknown-fields": True}
    if "type" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _union(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    branches = [structural(b, defs) for b in node.get("anyOf") or node.get("oneOf") or []]
    nullable = any(b.get("type") == "null" for b in branches)
    branches = [b for b in branches if b.get("type") != "null"]
    rest = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf")}
    if len(branches) == 1:
        out = dict(branches[0])
        if "description" in rest:
            out["description"] = rest["description"]
    else:
        types = {b.get("type") for b in branches}
        if types == {"object"} and all("properties" in b for b in branches):
            properties: dict[str, Any] = {}
            for branch in branches:
                properties.update(branch["properties"])
            out = {"type": "object", "properties": properties}
        elif len(types) == 1 and None not in types:
            out = {"type": types.pop()}
            enums = [b.get("enum") for b in branches]
            if all(enums):
                out["enum"] = [v for e in enums for v in e or []]
        elif types == {"integer", "string"}:
            out = {"x-kubernetes-int-or-string": True}
        else:
            out = {"x-kubernetes-preserve-unknown-fields": True}
        if "description" in rest:
            out["description"] = rest["description"]
    if nullable:
        out["nullable"] = True
    return out
