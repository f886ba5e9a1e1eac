"""The Gateway API's ``Gateway`` (``gateway.networking.k8s.io/v1``): an entry into the
mesh for callers outside it, with listeners for HTTP and HTTPS, and the ``HTTPRoute``s
whose ``parentRefs`` name it (the same rule semantics as mesh routes).

In local mode each Gateway runs as a gateway proxy, as mesh.yaml's short-form
``gateways:`` do (the loader adds one per Gateway). On Kubernetes a listener's
certificate is a Secret (``certificateRefs``); locally it is a pair of PEM files named
in the listener's ``tls.options``, the field the Gateway API leaves to implementations:

    tls:
      mode: Terminate
      options:
        sidemesh.io/certificate-file: /etc/sidemesh/shop.pem
        sidemesh.io/key-file: /etc/sidemesh/shop-key.pem
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from sidemesh.errors import Problem
from sidemesh.model.base import DnsLabel, Model, PortNumber
from sidemesh.model.mesh import Gateway, MeshDocument
from sidemesh.model.policy.common import ObjectMeta
from sidemesh.model.resolve import replica_names

if TYPE_CHECKING:
    from sidemesh.model.policy.documents import Policies

CERTIFICATE_FILE = "sidemesh.io/certificate-file"
KEY_FILE = "sidemesh.io/key-file"
GATEWAY_CLASS = "sidemesh"

Hostname = Annotated[
    str,
    StringConstraints(
        # Gateway API: a DNS name, optionally with one leading "*." label.
        pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        max_length=253,
    ),
]


class ListenerProtocol(StrEnum):
    HTTP = "HTTP"
    HTTPS = "HTTPS"


class CertificateRef(Model):
    group: str | None = None
    kind: str | None = None
    name: str
    namespace: DnsLabel | None = None


class ListenerTls(Model):
    mode: Literal["Terminate"] = "Terminate"
    """``Terminate`` only: the gateway ends TLS and routes the HTTP inside."""
    certificate_refs: tuple[CertificateRef, ...] = ()
    options: dict[str, str] = Field(default_factory=dict)

    @property
    def certificate_file(self) -> str | None:
        return self.options.get(CERTIFICATE_FILE)

    @property
    def key_file(self) -> str | None:
        return self.options.get(KEY_FILE)


class Listener(Model):
    name: DnsLabel
    port: PortNumber
    protocol: ListenerProtocol
    hostname: Hostname | None = None
    """Requests (and, for HTTPS, TLS server names) for this host only; any if left out."""
    tls: ListenerTls | None = None
    allowed_routes: dict[str, object] | None = None
    """Of the Gateway API's field, ``namespaces.from``: ``Same`` (the default: routes
    of the Gateway's namespace only) or ``All``."""

    @property
    def allows_any_namespace(self) -> bool:
        namespaces = (self.allowed_routes or {}).get("namespaces")
        return isinstance(namespaces, dict) and namespaces.get("from") == "All"

    @model_validator(mode="after")
    def _tls_for_https(self) -> Listener:
        if self.protocol is ListenerProtocol.HTTPS:
            if self.tls is None:
                raise ValueError("an HTTPS listener needs tls (its certificate and key)")
            if self.tls.certificate_file is None or self.tls.key_file is None:
                raise ValueError(
                    f"an HTTPS listener needs tls.options {CERTIFICATE_FILE!r} and "
                    f"{KEY_FILE!r} (PEM files; certificateRefs to Secrets are for Kubernetes)"
                )
            for path in (self.tls.certificate_file, self.tls.key_file):
                if not path.startswith("/"):
                    raise ValueError(
                        f"{path!r} must be an absolute path (the gateway's Envoy reads it)"
                    )
        elif self.tls is not None:
            raise ValueError("tls is for an HTTPS listener; this one is HTTP")
        return self


class GatewayAddress(Model):
    type: Literal["IPAddress"] = "IPAddress"
    value: str


class GatewaySpec(Model):
    gateway_class_name: str = GATEWAY_CLASS
    listeners: tuple[Listener, ...] = Field(min_length=1, max_length=64)
    addresses: tuple[GatewayAddress, ...] = Field(default=(), max_length=1)
    """Where its listeners bind (one IP address); 127.0.0.1 if left out."""

    @model_validator(mode="after")
    def _distinct(self) -> GatewaySpec:
        names = [listener.name for listener in self.listeners]
        if len(set(names)) != len(names):
            raise ValueError("listener names must be distinct")
        seen: dict[tuple[int, str | None], str] = {}
        protocols: dict[int, ListenerProtocol] = {}
        for listener in self.listeners:
            key = (listener.port, listener.hostname)
            if key in seen:
                raise ValueError(
                    f"listeners {seen[key]!r} and {listener.name!r} both take port "
                    f"{listener.port} for hostname {listener.hostname or '*'}"
                )
            seen[key] = listener.name
            if protocols.setdefault(listener.port, listener.protocol) is not listener.protocol:
                raise ValueError(f"port {listener.port} has both HTTP and HTTPS listeners")
        return self

    @property
    def address(self) -> str:
        return self.addresses[0].value if self.addresses else "127.0.0.1"


class APIGateway(Model):
    """A Gateway API ``Gateway`` (named so beside mesh.yaml's short-form ``Gateway``)."""

    api_version: Literal["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"]
    kind: Literal["Gateway"]
    metadata: ObjectMeta
    spec: GatewaySpec


def gateway_proxies(
    doc: MeshDocument, policies: Policies, where: Mapping[int, str]
) -> tuple[tuple[Gateway, ...], list[Problem]]:
    """One gateway proxy per Gateway document, to run and serve it as mesh.yaml's
    gateways are (its identity is its name, as theirs is); a problem for a name another
    proxy of its namespace has. ``where``: id(policy)
    → how messages name it."""
    default_ns = doc.mesh.default_namespace
    taken = {
        (name, w.namespace or default_ns): f"workload {name}"
        for w in doc.workloads
        for name in replica_names(w)
    }
    taken |= {(g.name, g.namespace or default_ns): f"gateway {g.name}" for g in doc.gateways}
    proxies: list[Gateway] = []
    problems: list[Problem] = []
    for gateway in policies.gateways:
        label = where[id(gateway)]
        meta = gateway.metadata
        namespace = meta.namespace or default_ns
        if (meta.name, namespace) in taken:
            problems.append(
                Problem(
                    f"{label} metadata.name",
                    f"{meta.name!r} is already {taken[(meta.name, namespace)]} in namespace "
                    f"{namespace!r}: a Gateway runs as a proxy of its own name",
                )
            )
            continue
        taken[(meta.name, namespace)] = f"Gateway {meta.name}"
        proxies.append(
            Gateway(
                name=meta.name,
                namespace=namespace,
                address=gateway.spec.address,
                port=gateway.spec.listeners[0].port,
            )
        )
    return tuple(proxies), problems
