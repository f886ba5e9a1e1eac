"""Pydantic models of what a mesh declares. Field names in YAML are camelCase, as in
Kubernetes (``serviceAccount``); in Python they are snake_case."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator

from sidemesh.model.base import DnsLabel, Model, PortNumber, ServiceName
from sidemesh.model.refs import ServiceKey


class Protocol(StrEnum):
    HTTP = "http"
    HTTP2 = "http2"
    GRPC = "grpc"
    TCP = "tcp"

    @property
    def is_http(self) -> bool:
        return self is not Protocol.TCP

    @property
    def needs_http2(self) -> bool:
        return self in (Protocol.HTTP2, Protocol.GRPC)


class MtlsMode(StrEnum):
    STRICT = "STRICT"
    PERMISSIVE = "PERMISSIVE"
    DISABLE = "DISABLE"


class OutboundTrafficMode(StrEnum):
    ALLOW_ANY = "ALLOW_ANY"
    """A call to a host outside the mesh goes out, resolved by the caller's sidecar."""
    REGISTRY_ONLY = "REGISTRY_ONLY"
    """Only mesh services and declared ExternalServices may be called; anything else
    is answered 502 by the caller's own sidecar."""


class OutboundTrafficPolicy(Model):
    """What a workload's call to a host that is neither a mesh service nor an
    ExternalService gets (Istio's meshConfig field of the same name)."""

    mode: OutboundTrafficMode = OutboundTrafficMode.ALLOW_ANY


class AuthorizationDefault(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class MeshAuthorization(Model):
    default: AuthorizationDefault = AuthorizationDefault.ALLOW
    """What a request to a service no ALLOW policy covers gets (DENY policies apply
    either way): ``allow``, or ``deny`` for a mesh where every call must be allowed
    by a policy (zero trust)."""


class MeshTracing(Model):
    """Distributed tracing: every sidecar and gateway makes spans (W3C trace context)
    and sends them over OTLP/gRPC."""

    random_sampling_percentage: float = Field(default=1.0, ge=0, le=100)
    """The share of requests that start a trace, in percent, where no Telemetry
    document says otherwise (1%, as Istio's default)."""
    collector: str | None = None
    """``HOST:PORT`` of an OpenTelemetry collector (OTLP/gRPC) to send spans to. Left
    out, they go to the control plane, which keeps recent traces (``sidemesh traces``)."""

    @field_validator("collector")
    @classmethod
    def _host_and_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not HOST:PORT (an OTLP/gRPC collector)")
        return value


class MeshConfig(Model):
    """Mesh-wide settings."""

    trust_domain: str = Field(default="cluster.local", min_length=1)
    """SPIFFE trust domain: identities are spiffe://<trustDomain>/ns/<ns>/sa/<sa>."""
    default_namespace: DnsLabel = "default"
    """Namespace of services and workloads that do not name one."""
    mtls: MtlsMode = MtlsMode.STRICT
    """Default mutual-TLS mode between sidecars."""
    outbound_traffic_policy: OutboundTrafficPolicy = Field(default_factory=OutboundTrafficPolicy)
    """Calls to hosts outside the mesh: ALLOW_ANY (the default in local mode) or
    REGISTRY_ONLY (declared ExternalServices only)."""
    authorization: MeshAuthorization = Field(default_factory=MeshAuthorization)
    tracing: MeshTracing = Field(default_factory=MeshTracing)


class ServicePort(Model):
    """A port a service is called on (``reviews:9080``)."""

    port: PortNumber
    protocol: Protocol = Protocol.HTTP
    name: DnsLabel | None = None
    """Defaults to ``<protocol>-<port>``; workloads refer to ports by this name."""

    @property
    def port_name(self) -> str:
        return self.name or f"{self.protocol.value}-{self.port}"


class Service(Model):
    """A name other workloads call."""

    name: DnsLabel
    namespace: DnsLabel | None = None
    ports: tuple[ServicePort, ...] = Field(min_length=1)
    mtls: MtlsMode | None = None
    """How this service's workloads accept traffic; defaults to the mesh's mode.
    PERMISSIVE also accepts plaintext, to move a service into the mesh gradually."""
    selector: dict[str, str] | None = None
    """Also serve from every workload of the namespace whose labels include these (as a
    Kubernetes Service selects pods), beside the workloads that name this service: so
    ``reviews-v2`` can be the v2 workloads of ``reviews``, for routes to split between."""
    addresses: tuple[str, ...] = ()
    """Virtual addresses callers dial for this service (a Kubernetes ClusterIP). A
    captured sidecar (``Sidecar.capture``) sends a connection to one of them, or to one
    of the service's workloads, on a TCP port, to the service: TCP has no Host."""

    @field_validator("addresses")
    @classmethod
    def _ip_literals(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"{address!r} is not an IP address") from None
        return value


class WorkloadPort(Model):
    """Where one workload serves one port of its service."""

    name: DnsLabel
    """The service port's name."""
    port: PortNumber
    """The endpoint: where this workload's sidecar accepts mesh traffic."""
    app_port: PortNumber
    """Where the application itself listens, on 127.0.0.1."""


INBOUND_CAPTURE_PORT = 15006
"""Where a captured sidecar (``Sidecar.capture``) accepts the inbound connections its
pod's redirect sends it."""


class Sidecar(Model):
    """Ports of the workload's sidecar that the control plane must know. Left out, the
    outbound port is 15001 (one workload per address), or a free one under ``sidemesh
    up``. Envoy's admin has no port: it listens on a Unix socket only the mesh's user
    may open."""

    outbound_port: PortNumber | None = None
    """The local listener the app sends its outbound requests to (its HTTP proxy)."""
    capture: bool = False
    """Traffic reaches the sidecar through an iptables redirect (a Kubernetes pod), so
    the sidecar binds none of the workload's ports: those are the app's own, and
    callers' connections to them are redirected to the sidecar's inbound capture port."""


class Upstream(Model):
    """A service the app reaches on a local port of its sidecar (for TCP and gRPC,
    which an HTTP proxy setting does not cover). Exported to the app as
    ``SIDEMESH_UPSTREAM_<SERVICE>=127.0.0.1:<localPort>``."""

    service: DnsLabel
    port: PortNumber | None = None
    """The service port; defaults to the service's first port."""
    local_port: PortNumber | None = None
    """Where the sidecar listens for it on 127.0.0.1; free one if left out."""


class Workload(Model):
    """One running instance of a service, with one address."""

    name: DnsLabel
    service: DnsLabel
    namespace: DnsLabel | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    address: str = "127.0.0.1"
    port: PortNumber | None = None
    """Endpoint of the service's first port (shorthand for a one-port service)."""
    app_port: PortNumber | None = None
    """Where the app listens for the service's first port (shorthand)."""
    ports: tuple[WorkloadPort, ...] = ()
    """Per service port: endpoint and app port. Use either this or port/appPort."""
    service_account: DnsLabel | None = None
    """Identity of the workload; defaults to the service's name."""
    sidecar: Sidecar = Field(default_factory=Sidecar)
    upstreams: tuple[Upstream, ...] = ()
    calls: tuple[ServiceName, ...] = ()
    """Services the app calls over HTTP (``reviews``, or ``reviews.other-namespace``):
    its sidecar holds them from the start. Any other is learned at its first call (see
    README, "Each sidecar holds what it uses"); naming them saves that first lookup."""
    replicas: int = Field(default=1, ge=1, le=50)

    def called(self, namespace: str) -> list[ServiceKey]:
        """The services ``calls`` names, a bare name meaning one of ``namespace``."""
        keys = []
        for name in self.calls:
            service, _, other = name.partition(".")
            keys.append(ServiceKey(service, other or namespace))
        return keys

    """Run this many copies, named <name>-1, <name>-2, ... (local mode picks their ports)."""
    command: str | tuple[str, ...] | None = None
    """Local mode: the app's command line. ``{port}``, ``{workload}``, ``{service}`` and
    ``{version}`` are filled in; a string is split like a shell would."""
    env: dict[str, str] = Field(default_factory=dict)
    """Local mode: extra environment of the app (templated like ``command``)."""
    ready: bool = True
    """False while it starts (a pod not Ready yet): it has its identity, so its sidecar
    gets a certificate and config, but no caller is sent to it, as Kubernetes leaves a
    pod that is not ready out of its Service's endpoints."""


class GatewayRoute(Model):
    prefix: Annotated[str, StringConstraints(pattern=r"^/")] = "/"
    service: DnsLabel
    port: PortNumber | None = None
    """The service port; defaults to the service's first HTTP port."""


class Gateway(Model):
    """An entry into the mesh: an Envoy listening on ``address:port`` for callers
    outside the mesh, routing by path prefix to services over mTLS."""

    name: DnsLabel
    namespace: DnsLabel | None = None
    address: str = "127.0.0.1"
    port: PortNumber
    routes: tuple[GatewayRoute, ...] = ()
    """The short form's routes on ``port``; none for the proxy of a Gateway API
    ``Gateway`` document (the loader adds one per document, with its listeners' and
    routes' config coming from the documents)."""
    service_account: DnsLabel | None = None
    """Identity of the gateway; defaults to its name."""


class MeshDocument(Model):
    """mesh.yaml's first document: the compact local form."""

    mesh: MeshConfig = Field(default_factory=MeshConfig)
    services: tuple[Service, ...] = ()
    workloads: tuple[Workload, ...] = ()
    gateways: tuple[Gateway, ...] = ()
    include: tuple[str, ...] = ()
    """Files of policy documents (Kubernetes form), relative to mesh.yaml; globs allowed."""
