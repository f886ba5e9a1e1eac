"""The agent's side of identity: make a key (it never leaves this process), send a
CSR with the bootstrap token, get back the certificate chain and trust bundle."""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sidemesh.errors import SidemeshError
from sidemesh.identity.ca import public_key_der

CONNECT_TIMEOUT_S = 2.0


class CertificateRequestFailed(SidemeshError):
    """The CA refused or could not be reached; ``retryable`` says whether trying
    again may help (unreachable, 5xx) or not (refused: 4xx)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class WorkloadCertificate:
    key_pem: bytes = field(repr=False)
    chain_pem: bytes
    trust_bundle_pem: bytes
    identity: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    received_at: dt.datetime
    """When the agent got it. Renewal counts from here, not from ``not_before``,
    which the CA backdates to allow for clock skew."""

    @property
    def lifetime(self) -> dt.timedelta:
        """The usable lifetime, from receipt to expiry."""
        return self.not_after - self.received_at


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def csr_for(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A CSR naming no identity: the CA puts in the one the token proves."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sidemesh")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


async def request_from_any(
    ca_urls: str, token: str, ca_bundle: Path, timeout: float = 10.0
) -> WorkloadCertificate:
    """``request_certificate`` from the first of ``ca_urls`` (comma-separated, every
    replica of the control plane) that answers. A refusal is final: the replicas share
    one CA and one mesh, so another would refuse too."""
    failure: CertificateRequestFailed | None = None
    for url in [u.strip() for u in ca_urls.split(",") if u.strip()]:
        try:
            return await request_certificate(url, token, ca_bundle, timeout)
        except CertificateRequestFailed as exc:
            if not exc.retryable:
                raise
            failure = exc
    assert failure is not None, "at least one CA address"
    raise failure


async def request_certificate(
    ca_url: str, token: str, ca_bundle: Path, timeout: float = 10.0
) -> WorkloadCertificate:
    key = new_key()
    try:
        verify = ssl.create_default_context(cafile=str(ca_bundle))
    except (OSError, ssl.SSLError) as exc:
        raise CertificateRequestFailed(
            f"cannot read the mesh root certificate {ca_bundle}: {exc}", retryable=False
        ) from exc
    try:
        # A short connect timeout: a CA address that drops packets must not hold a
        # renewal that is retried every second for the whole request timeout.
        limits = httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_S))
        async with httpx.AsyncClient(verify=verify, timeout=limits) as client:
            response = await client.post(
                f"{ca_url}/v1/certificates",
                json={"csr": csr_for(key).decode()},
                headers={"Authorization": f"Bearer {token}"},
            )
    except httpx.HTTPError as exc:
        raise CertificateRequestFailed(
            f"cannot reach the CA at {ca_url}: {exc}", retryable=True
        ) from exc
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise CertificateRequestFailed(
            f"the CA at {ca_url} refused: {response.status_code} {detail}",
            retryable=response.status_code >= 500,
        )
    try:
        body = response.json()
        leaf = x509.load_pem_x509_certificate(body["certificateChain"].encode())
        identity = body["identity"]
        x509.load_pem_x509_certificate(body["trustBundle"].encode())
    except (ValueError, KeyError, TypeError) as exc:
        raise CertificateRequestFailed(
            f"the CA at {ca_url} answered something that is not a certificate: {exc}",
            retryable=True,
        ) from exc
    if public_key_der(leaf.public_key()) != public_key_der(key.public_key()):
        raise CertificateRequestFailed(
            f"the CA at {ca_url} returned a certificate for another key", retryable=True
        )
    return WorkloadCertificate(
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        chain_pem=body["certificateChain"].encode(),
        trust_bundle_pem=body["trustBundle"].encode(),
        identity=identity,
        serial=body["serial"],
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        received_at=dt.datetime.now(dt.UTC),
    )
