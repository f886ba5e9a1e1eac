"""``SpiffeId``: a SPIFFE ID taken apart, as the CA signs it and a CSR is checked
against it. The text form is ``model.refs``' (``spiffe_id``, ``parse_spiffe_id``), the
one place it is written and read."""

from __future__ import annotations

from dataclasses import dataclass

from sidemesh.model.refs import parse_spiffe_id, spiffe_id


@dataclass(frozen=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    service_account: str

    @property
    def uri(self) -> str:
        return spiffe_id(self.trust_domain, self.namespace, self.service_account)

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """Raises ``ValueError`` if ``uri`` is not a SPIFFE ID of the mesh's form."""
        return cls(*parse_spiffe_id(uri))

    def __str__(self) -> str:
        return self.uri


CONTROL_PLANE_NAMESPACE = "sidemesh-system"
CONTROL_PLANE_ACCOUNT = "controlplane"


def control_plane_identity(trust_domain: str) -> SpiffeId:
    """Who the control plane is to the mesh: its xDS and CA endpoints present a
    certificate for this ID, and sidecars accept no other."""
    return SpiffeId(trust_domain, CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_ACCOUNT)
