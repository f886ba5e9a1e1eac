"""``/v1/proxies``: the typed shape of what the control plane knows of each connected
proxy (OpenAPI documents it), read by ``sidemesh proxies``, ``proxy-config`` and the
dashboard; and ``/v1/proxies/{node}/config``, what it was sent."""

from __future__ import annotations

from typing import Any

from sidemesh.api.response import ApiModel


class NackOut(ApiModel):
    version: str
    error: str
    """Envoy's own message."""
    at: float


class TypeOut(ApiModel):
    sent_version: str
    acked_version: str
    acked_state_version: int
    synced: bool
    nacks: int
    pushes: int
    last_nack: NackOut | None


class CertificateOut(ApiModel):
    identity: str
    serial: str
    not_after: str
    expires_in_seconds: float


class ProxyOut(ApiModel):
    node: str
    xds_mode: str
    connected: bool
    connected_at: float
    admin_socket: str | None
    """Where its Envoy admin listens (a 0600 Unix socket on its host)."""
    state_version: int
    """The mesh version of the newest config it was sent."""
    synced: bool
    types: dict[str, TypeOut]
    certificate: CertificateOut | None


class ProxiesOut(ApiModel):
    mesh_version: int
    proxies: list[ProxyOut]


class SentResourceOut(ApiModel):
    version: str
    """The resource's own version, as sent over xDS."""
    config: dict[str, Any]
    """The Envoy resource itself (a Cluster, ClusterLoadAssignment, Listener,
    RouteConfiguration or VirtualHost) as protobuf JSON with Envoy's field names:
    open-ended, as Envoy's config dump is."""


class ProxyConfigOut(ApiModel):
    node: str
    state_version: int
    """The mesh version this config was made from."""
    types: dict[str, dict[str, SentResourceOut]]
    """By type (``clusters``, ``endpoints``, ``listeners``, ``routes``, ``vhosts``), then
    by resource name."""
    services: dict[str, str] | None = None
    """A sidecar on demand: each service it holds (``reviews.default``) and why
    (``declared``, ``policy``, ``on demand``, ``backend``). None: it is sent every
    service (a gateway, or a sidecar on state-of-the-world xDS)."""
