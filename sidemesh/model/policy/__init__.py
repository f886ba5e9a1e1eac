"""Policies: the Kubernetes-form documents after mesh.yaml's first one (or in the files
it includes), the very objects a user applies with ``kubectl`` on a cluster.

Owns: the Gateway API routes (``HTTPRoute``, ``GRPCRoute``), sidemesh's own kinds
(``BackendPolicy``, ``FaultInjection``, ``ExternalService``,
``AuthorizationPolicy``, ``RequestAuthentication``, ``Telemetry``), reading documents into
them, and checking them against the services and workloads of the mesh.
Must not: know Envoy; a policy says what, translation says how."""

from sidemesh.model.policy.authentication import RequestAuthentication
from sidemesh.model.policy.authorization import AuthorizationPolicy
from sidemesh.model.policy.backend import BackendPolicy, FaultInjection
from sidemesh.model.policy.documents import Policies, Policy
from sidemesh.model.policy.external import ExternalService
from sidemesh.model.policy.routes import GRPCRoute, HTTPRoute
from sidemesh.model.policy.telemetry import Telemetry

__all__ = [
    "AuthorizationPolicy",
    "BackendPolicy",
    "ExternalService",
    "FaultInjection",
    "GRPCRoute",
    "HTTPRoute",
    "Policies",
    "Policy",
    "RequestAuthentication",
    "Telemetry",
]
