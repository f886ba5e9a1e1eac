"""The mesh's own vocabulary: services, workloads, mesh settings, and ``MeshState``.

Owns: the pydantic models, loading and validating ``mesh.yaml`` and its policy
documents (``policy/``: Gateway API routes, sidemesh's own kinds), the immutable
versioned ``MeshState`` every other room reads.
Must not: import grpc, Envoy protos, Kubernetes or any other sidemesh room; do I/O
other than reading the file it is asked to load (and the files it includes) and
looking up, once and within a bounded time, the host names that file gives as
addresses (``addresses.py``).
"""

from sidemesh.model.addresses import parse_ip
from sidemesh.model.loader import (
    load_mesh_file,
    parse_documents,
    parse_mesh_document,
    read_mesh_documents,
)
from sidemesh.model.mesh import (
    INBOUND_CAPTURE_PORT,
    AuthorizationDefault,
    Gateway,
    GatewayRoute,
    MeshConfig,
    MeshDocument,
    MtlsMode,
    OutboundTrafficMode,
    Protocol,
    Service,
    ServicePort,
    Sidecar,
    Upstream,
    Workload,
    WorkloadPort,
)
from sidemesh.model.refs import ServiceKey
from sidemesh.model.resolve import PortPicker
from sidemesh.model.state import MeshState

__all__ = [
    "INBOUND_CAPTURE_PORT",
    "AuthorizationDefault",
    "Gateway",
    "GatewayRoute",
    "MeshConfig",
    "MeshDocument",
    "MeshState",
    "MtlsMode",
    "OutboundTrafficMode",
    "PortPicker",
    "Protocol",
    "Service",
    "ServiceKey",
    "ServicePort",
    "Sidecar",
    "Upstream",
    "Workload",
    "WorkloadPort",
    "load_mesh_file",
    "parse_documents",
    "parse_ip",
    "parse_mesh_document",
    "read_mesh_documents",
]
