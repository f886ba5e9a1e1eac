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
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if any(uri != identity.uri for uri in uris):
        raise CsrForAnotherIdentity(
            f"the CSR asks for {', '.join(uris)}, but its sender is {identity.uri}"
        )
    extra = _more_than_an_identity(csr)
    if extra:
        # The CA would drop these; signing anyway would hide from the sender that it
        # asked for more than it may have.
        raise CsrRejected(
            f"the CSR asks for more than a workload certificate holds: {'; '.join(extra)}. "
            f"Ask for {identity.uri} alone (a URI SAN, or none)"
        )
    return csr


def _more_than_an_identity(csr: x509.CertificateSigningRequest) -> list[str]:
    """What the CSR asks for beside its one URI SAN, in words."""
    found = []
    for extension in csr.extensions:
        value = extension.value
        if isinstance(value, x509.SubjectAlternativeName):
            for name in value:
                if isinstance(name, x509.DNSName):
                    found.append(f"a DNS name SAN {name.value!r}")
                elif isinstance(name, x509.IPAddress):
                    found.append(f"an IP address SAN {name.value}")
                elif isinstance(name, x509.RFC822Name):
                    found.append(f"an email SAN {name.value!r}")
                elif not isinstance(name, x509.UniformResourceIdentifier):
                    found.append(f"a {type(name).__name__} SAN")
            uris = value.get_values_for_type(x509.UniformResourceIdentifier)
            if len(uris) > 1:
                found.append(f"{len(uris)} URI SANs")
        elif isinstance(value, x509.BasicConstraints) and value.ca:
            found.append("CA:true (a certificate that could sign others)")
    return found
