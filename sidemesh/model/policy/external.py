"""``ExternalService`` (``sidemesh.io/v1alpha1``): a host outside the mesh that
workloads may call through their sidecar, as Istio's ServiceEntry or Consul's
terminating-gateway services declare one.

A declared host gets what a mesh service gets on the caller's side: a cluster (so
its requests are counted and its failures show in Envoy's stats), the mesh's timeout
and retries, and, if ``tls`` is set, TLS originated by the sidecar, so an app that
speaks plain HTTP to ``http://api.example.com`` reaches it over HTTPS. Whether an
undeclared host may be called at all is the mesh's ``outboundTrafficPolicy``."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from sidemesh.model.base import DnsLabel, Model, PortNumber
from sidemesh.model.policy.common import ObjectMeta

HostName = Annotated[
    str,
    StringConstraints(
        # RFC 1123 host names, lower case (Host headers are matched lower-cased), or
        # an IPv4 literal.
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length=253,
    ),
]


class ExternalPort(Model):
    port: PortNumber
    """The port the app calls (``http://api.example.com:<port>``; 80 when it names none)."""
    protocol: Literal["HTTP"] = "HTTP"
    """HTTP only: an app reaches the outside through its sidecar's HTTP proxy."""
    name: DnsLabel | None = None
    target_port: PortNumber | None = None
    """Where the host serves, if not on ``port`` (443 with ``tls``, typically)."""

    @property
    def serving_port(self) -> int:
        return self.target_port or self.port


class ExternalEndpoint(Model):
    """An address serving the hosts, instead of what DNS says for them."""

    address: str = Field(min_length=1)
    """An IP literal or a host name."""


class OriginateTls(Model):
    """The sidecar calls the host over TLS; the app speaks plain HTTP to its sidecar."""

    sni: HostName | None = None
    """Server name sent and checked in the host's certificate; defaults to the host."""
    ca_certificates: str | None = None
    """PEM file of the CAs to trust (an absolute path); defaults to the system's."""

    @model_validator(mode="after")
    def _absolute(self) -> OriginateTls:
        if self.ca_certificates is not None and not self.ca_certificates.startswith("/"):
            raise ValueError(
                f"caCertificates {self.ca_certificates!r} must be an absolute path "
                "(every sidecar's Envoy reads it, from its own working directory)"
            )
        return self


class ExternalServiceSpec(Model):
    hosts: tuple[HostName, ...] = Field(min_length=1)
    ports: tuple[ExternalPort, ...] = Field(min_length=1)
    endpoints: tuple[ExternalEndpoint, ...] = ()
    """Left out, each host is resolved by DNS (by each sidecar, when it calls)."""
    tls: OriginateTls | None = None


class ExternalService(Model):
    api_version: Literal["sidemesh.io/v1alpha1"]
    kind: Literal["ExternalService"]
    metadata: ObjectMeta
    spec: ExternalServiceSpec
