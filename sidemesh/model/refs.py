"""References: how the mesh names a service, a workload or a gateway, and the one
SPIFFE ID formatter and parser.

Owns: ``Ref`` (a name in a namespace), written ``<name>.<namespace>`` wherever a
person reads it (logs, errors, metrics labels), and SPIFFE IDs
(``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``): every room that
writes or reads one goes through ``spiffe_id`` and ``parse_spiffe_id``, so the
format lives in one place.
Must not: know whether the thing referred to exists (``MeshState`` does), or import
anything but the standard library.
"""

from __future__ import annotations

import re
from typing import NamedTuple, TypeAlias


class Ref(NamedTuple):
    """A name in a namespace. A tuple, so it is the same dict key as the
    ``(name, namespace)`` pairs that key ``MeshState.workloads`` and ``gateways``."""

    name: str
    namespace: str

    def __str__(self) -> str:
        return f"{self.name}.{self.namespace}"


ServiceKey: TypeAlias = Ref
"""A service (``reviews.default``). The same type as every other reference: the name
says what a signature expects."""
WorkloadRef: TypeAlias = Ref
"""A workload or a gateway (``reviews-v1.default``), one running instance."""


SPIFFE_SCHEME = "spiffe://"
_SPIFFE_ID = re.compile(r"spiffe://([^/]+)/ns/([^/]+)/sa/([^/]+)")


def spiffe_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """The SPIFFE ID of a service account: whom a certificate names and a peer checks."""
    return f"{trust_domain_prefix(trust_domain)}ns/{namespace}/sa/{service_account}"


def trust_domain_prefix(trust_domain: str) -> str:
    """What every SPIFFE ID of ``trust_domain`` starts with (``spiffe://example.org/``):
    a peer from the mesh, whoever it is, matches it."""
    return f"{SPIFFE_SCHEME}{trust_domain}/"


def namespace_prefix(trust_domain: str, namespace: str) -> str:
    """What the SPIFFE ID of every service account of ``namespace`` starts with."""
    return f"{trust_domain_prefix(trust_domain)}ns/{namespace}/sa/"


def as_spiffe_uri(principal: str) -> str:
    """A principal written with or without the scheme (Istio writes
    ``cluster.local/ns/default/sa/reviews``), with it."""
    return principal if principal.startswith(SPIFFE_SCHEME) else SPIFFE_SCHEME + principal


def parse_spiffe_id(uri: str) -> tuple[str, str, str]:
    """(trust domain, namespace, service account) of a SPIFFE ID as ``spiffe_id``
    writes it; raises ``ValueError`` for anything else (another scheme or path, an
    empty part). Identity keeps the parsed form (``identity.SpiffeId``)."""
    match = _SPIFFE_ID.fullmatch(uri)
    if match is None:
        raise ValueError(f"{uri!r} is not spiffe://<trust-domain>/ns/<ns>/sa/<sa>")
    trust_domain, namespace, service_account = match.groups()
    return trust_domain, namespace, service_account
