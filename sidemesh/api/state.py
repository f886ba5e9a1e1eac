"""``/v1/state``: the typed shape of the mesh state as the control plane understood it
(OpenAPI documents it), read by ``sidemesh status``, the dashboard's config page and
the tests' harness.

Services, workloads, gateways and policies are the mesh's own documents (the models
mesh.yaml is read into), each with what the control plane worked out beside it. Fields
a document leaves empty are left out of it, so the route is served with
``response_model_exclude_unset``: what was not in the state is not in the answer."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from sidemesh.api.response import ApiModel
from sidemesh.model import MeshState, MtlsMode
from sidemesh.model.mesh import Gateway, MeshConfig, Service, Workload
from sidemesh.model.policy import Policy

_DOCSTRINGS = ConfigDict(use_attribute_docstrings=True)


class StateServiceOut(Service):
    model_config = _DOCSTRINGS

    workloads: list[str]
    """The workloads serving it: those naming it and those its selector picks."""
    mtls_mode: MtlsMode
    """How its workloads accept traffic: its own ``mtls``, else the mesh's."""
    authorization_policies: list[str]
    """The AuthorizationPolicies that apply to it, by name."""
    request_authentications: list[str]
    """The RequestAuthentications that apply to it, by name."""


class StateWorkloadOut(Workload):
    model_config = _DOCSTRINGS

    env: list[str]  # type: ignore[assignment]  # the document's env is names to values
    """The names of its app's environment variables; never their values (they may hold
    secrets expanded from ``${VAR}``)."""
    identity: str
    """Its SPIFFE ID."""


class StateGatewayOut(Gateway):
    model_config = _DOCSTRINGS

    identity: str
    """Its SPIFFE ID."""


class SourceOut(ApiModel):
    file: str
    """The mesh.yaml the state was read from."""
    rejected_edits: int
    """Edits of it refused as invalid since the control plane started."""
    last_error: str | None
    """Why the last refused edit was refused (the file, the field path, the reason)."""


class StateOut(ApiModel):
    version: int
    """The mesh version: one more with each accepted change."""
    mesh: MeshConfig
    services: list[StateServiceOut]
    workloads: list[StateWorkloadOut]
    gateways: list[StateGatewayOut]
    policies: list[Annotated[Policy, Field(discriminator="kind")]]
    """The policy documents (routes, backend policies, authorization, ...), namespaces
    filled in, in the order written."""
    warnings: list[str]
    """What loading accepted but an operator should see (an unresolved backendRef, two
    routes that conflict), each naming file and field."""
    source: SourceOut | None = None
    """Where the state comes from, when it is a mesh.yaml (left out otherwise)."""

    @classmethod
    def of(cls, state: MeshState, source: SourceOut | None = None) -> StateOut:
        data = state.to_json()
        if source is not None:
            data["source"] = source
        return cls.model_validate(data)
