"""Where a registry keeps the mesh, shared by the etcd source (which reads it) and the
agents (which register their workloads in it): the key layout under one prefix and
how etcd endpoints are written. Pure: no client, no I/O.

- ``<prefix>/mesh``: mesh.yaml's first document (mesh settings, services, gateways,
  workloads declared by hand), as JSON;
- ``<prefix>/documents/<kind>/<namespace>/<name>``: each policy document, as JSON;
- ``<prefix>/registrations/<namespace>/<workload>``: a workload an agent registered
  (as a ``workloads:`` entry of mesh.yaml), under the agent's lease: it leaves the mesh
  when the lease expires (the host died) or is revoked (a clean stop).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

DEFAULT_PREFIX = "/sidemesh"
DEFAULT_LEASE_TTL_S = 10
GRPC_KEEPALIVE = {
    # A member that stops answering (a host gone, a link cut) is noticed in seconds,
    # not at the kernel's TCP timeout, and the channel moves to another member.
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 3_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 2_000,
}

Kind = Literal["mesh", "document", "registration"]


@dataclass(frozen=True)
class Layout:
    prefix: str = DEFAULT_PREFIX

    @property
    def root(self) -> bytes:
        return f"{self.prefix.rstrip('/')}/".encode()

    @property
    def mesh(self) -> bytes:
        return self.root + b"mesh"

    @property
    def documents(self) -> bytes:
        return self.root + b"documents/"

    def document(self, kind: str, namespace: str, name: str) -> bytes:
        return self.documents + f"{kind}/{namespace}/{name}".encode()

    @property
    def registrations(self) -> bytes:
        return self.root + b"registrations/"

    def registration(self, namespace: str, workload: str) -> bytes:
        return self.registrations + f"{namespace}/{workload}".encode()

    def kind_of(self, key: bytes) -> Kind | None:
        if key == self.mesh:
            return "mesh"
        if key.startswith(self.documents):
            return "document"
        if key.startswith(self.registrations):
            return "registration"
        return None


def grpc_target(endpoints: str) -> tuple[str, int]:
    """``http://10.0.0.1:2379,http://10.0.0.2:2379`` (scheme optional) as the (host,
    port) an etcd client joins into its gRPC target: one channel over every member, so
    that when the member in use goes away the channel moves to another. Raises
    ``ValueError`` naming the endpoint that is wrong."""
    found = []
    for item in endpoints.split(","):
        text = item.strip()
        if not text:
            continue
        parts = urlsplit(text if "://" in text else f"http://{text}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(
                f"{item!r} is not an etcd endpoint: write http://HOST:PORT "
                "(TLS to etcd is not supported yet)"
            )
        found.append((parts.hostname, parts.port or 2379))
    if not found:
        raise ValueError("no etcd endpoint given")
    if len(found) == 1:
        return found[0]
    for host, _ in found:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"{host}: several etcd endpoints must be IP addresses (or give one name "
                "that resolves to every member)"
            ) from None
    # The client writes "<host>:<port>": "ipv4:a:p,b:p,c" + ":" + the last port.
    *rest, (last_host, last_port) = found
    return "ipv4:" + "".join(f"{h}:{p}," for h, p in rest) + last_host, last_port
