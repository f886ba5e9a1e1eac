"""Checks on a certificate signing request: pure functions, no I/O."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from sidemesh.errors import SidemeshError
from sidemesh.identity.spiffe import SpiffeId


class CsrRejected(SidemeshError):
    """A CSR is malformed or weak."""


class CsrForAnotherIdentity(CsrRejected):
    """A CSR asks for an identity its sender does not have."""


def check_csr(csr_pem: bytes, identity: SpiffeId) -> x509.CertificateSigningRequest:
    """The parsed CSR if it is well-formed, self-signed, an ECDSA P-256 key, and asks
    for ``identity`` and nothing else (or for no identity: the CA names it)."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CsrRejected("the CSR is not a PEM certificate request") from exc
    if not csr.is_signature_valid:
        raise CsrRejected("the CSR's signature does not match its key")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise CsrRejected("the CSR's key must be ECDSA P-256")
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return csr
    uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    others = [n for n in sans if not isinstance(n, x509.UniformResourceIdentifier | x509.DNSName)]
    if others or any(uri != identity.uri for uri in uris):
        raise CsrForAnotherIdentity(
            f"the CSR asks for {', '.join(uris) or 'other names'}, but its sender is {identity.uri}"
        )
    return csr
