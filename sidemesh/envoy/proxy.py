"""A proxy's identity as Envoy states it in its xDS node id."""

from __future__ import annotations

from dataclasses import dataclass

NODE_ID_KIND = "sidecar"
ADMIN_SOCKET_METADATA = "sidemesh.io/admin-socket"
"""Node metadata: the Unix socket of the proxy's Envoy admin, so the control plane on
the same host knows where to ask it (its stats, its view of the endpoints)."""


@dataclass(frozen=True)
class ProxyId:
    """``sidecar~<workload>~<namespace>``, the node id each sidecar connects with."""

    workload: str
    namespace: str

    @property
    def node_id(self) -> str:
        return f"{NODE_ID_KIND}~{self.workload}~{self.namespace}"

    @classmethod
    def parse(cls, node_id: str) -> ProxyId:
        parts = node_id.split("~")
        if len(parts) != 3 or parts[0] != NODE_ID_KIND or not parts[1] or not parts[2]:
            raise ValueError(
                f"node id {node_id!r} is not of the form {NODE_ID_KIND}~<workload>~<namespace>"
            )
        return cls(workload=parts[1], namespace=parts[2])

    def __str__(self) -> str:
        return self.node_id
