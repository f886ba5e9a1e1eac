"""CSR checks (sidemesh/identity/csr.py), with real CSRs made by ``cryptography``."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from sidemesh.identity.ca import CertificateAuthority
from sidemesh.identity.csr import CsrForAnotherIdentity, CsrRejected, check_csr
from sidemesh.identity.spiffe import SpiffeId

REVIEWS = SpiffeId("example.org", "default", "reviews")
RATINGS = SpiffeId("example.org", "default", "ratings")


def make_csr(
    *names: x509.GeneralName | str,
    key: CertificateIssuerPrivateKeyTypes | None = None,
) -> tuple[bytes, CertificateIssuerPrivateKeyTypes]:
    """A PEM CSR signed by ``key`` (a fresh ECDSA P-256 key by default), asking for
    ``names`` as subjectAltName (a ``str`` is a URI); no SAN when ``names`` is empty."""
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "workload")])
    )
    if names:
        sans = [x509.UniformResourceIdentifier(n) if isinstance(n, str) else n for n in names]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM), key


def test_csr_for_own_identity_is_accepted() -> None:
    pem, key = make_csr(REVIEWS.uri)
    csr = check_csr(pem, REVIEWS)
    assert csr.public_key() == key.public_key()


def test_csr_without_san_is_accepted() -> None:
    pem, key = make_csr()
    assert check_csr(pem, REVIEWS).public_key() == key.public_key()


def test_csr_with_a_dns_name_is_refused_naming_it() -> None:
    pem, _ = make_csr(x509.DNSName("reviews.default.svc"))
    with pytest.raises(CsrRejected, match=r"a DNS name SAN 'reviews\.default\.svc'"):
        check_csr(pem, REVIEWS)


def test_csr_with_its_own_identity_and_an_ip_is_refused_naming_the_ip() -> None:
    pem, _ = make_csr(REVIEWS.uri, x509.IPAddress(ipaddress.ip_address("10.0.0.1")))
    with pytest.raises(CsrRejected) as caught:
        check_csr(pem, REVIEWS)
    assert "an IP address SAN 10.0.0.1" in str(caught.value)
    assert not isinstance(caught.value, CsrForAnotherIdentity)


def test_csr_for_another_identity_names_both() -> None:
    pem, _ = make_csr(RATINGS.uri)
    with pytest.raises(CsrRejected) as caught:
        check_csr(pem, REVIEWS)
    assert RATINGS.uri in str(caught.value)
    assert REVIEWS.uri in str(caught.value)


def test_csr_for_another_trust_domain_is_refused() -> None:
    pem, _ = make_csr(SpiffeId("evil.org", "default", "reviews").uri)
    with pytest.raises(CsrRejected, match=r"spiffe://evil\.org/ns/default/sa/reviews"):
        check_csr(pem, REVIEWS)


def test_csr_with_own_and_another_identity_is_refused() -> None:
    pem, _ = make_csr(REVIEWS.uri, RATINGS.uri)
    with pytest.raises(CsrRejected, match=RATINGS.uri):
        check_csr(pem, REVIEWS)


def test_csr_with_other_name_types_is_refused() -> None:
    pem, _ = make_csr(REVIEWS.uri, x509.RFC822Name("root@example.org"))
    with pytest.raises(CsrRejected, match=REVIEWS.uri):
        check_csr(pem, REVIEWS)


def test_csr_with_rsa_key_is_refused() -> None:
    pem, _ = make_csr(REVIEWS.uri, key=rsa.generate_private_key(65537, 2048))
    with pytest.raises(CsrRejected, match="ECDSA P-256"):
        check_csr(pem, REVIEWS)


def test_csr_with_p384_key_is_refused() -> None:
    pem, _ = make_csr(REVIEWS.uri, key=ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(CsrRejected, match="ECDSA P-256"):
        check_csr(pem, REVIEWS)


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"garbage",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ],
    ids=["empty", "garbage", "bad-base64-body"],
)
def test_garbage_is_refused(pem: bytes) -> None:
    with pytest.raises(CsrRejected, match="not a PEM certificate request"):
        check_csr(pem, REVIEWS)


def test_certificate_instead_of_csr_is_refused(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, "example.org")
    with pytest.raises(CsrRejected, match="not a PEM certificate request"):
        check_csr(ca.trust_bundle_pem, REVIEWS)


def test_csr_with_broken_signature_is_refused() -> None:
    pem, _ = make_csr(REVIEWS.uri)
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the ECDSA signature's s
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CsrRejected, match="signature"):
        check_csr(tampered, REVIEWS)


def test_ca_names_the_identity_when_the_csr_has_no_san(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, "example.org")
    pem, key = make_csr()
    issued = ca.sign(pem, REVIEWS, dt.timedelta(minutes=5))
    leaf = x509.load_pem_x509_certificates(issued.chain_pem)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [REVIEWS.uri]
    assert leaf.public_key() == key.public_key()


def test_ca_refuses_a_csr_for_another_identity(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, "example.org")
    pem, _ = make_csr(RATINGS.uri)
    with pytest.raises(CsrRejected, match=RATINGS.uri):
        ca.sign(pem, REVIEWS, dt.timedelta(minutes=5))


def test_csr_asking_to_be_a_ca_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(REVIEWS.uri)]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(CsrRejected, match="CA:true"):
        check_csr(csr.public_bytes(serialization.Encoding.PEM), REVIEWS)
