"""The certificate authority (sidemesh/identity/ca.py): real keys and certificates in a
real directory, verified by ``cryptography`` and by a real TLS handshake."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import ssl
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from sidemesh.identity import ca as ca_module
from sidemesh.identity.ca import (
    CA_CERT,
    CA_KEY,
    CLOCK_SKEW,
    ROOT_CERT,
    ROOT_KEY,
    CaError,
    CertificateAuthority,
)
from sidemesh.identity.spiffe import SpiffeId
from tests.identity.test_csr import make_csr

TRUST_DOMAIN = "example.org"
REVIEWS = SpiffeId(TRUST_DOMAIN, "default", "reviews")
RATINGS = SpiffeId(TRUST_DOMAIN, "default", "ratings")


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "ca", TRUST_DOMAIN)


def _public_der(key: ec.EllipticCurvePublicKey | object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _issue(
    ca: CertificateAuthority,
    identity: SpiffeId = REVIEWS,
    lifetime: dt.timedelta = dt.timedelta(minutes=5),
) -> tuple[list[x509.Certificate], ec.EllipticCurvePrivateKey, bytes]:
    pem, key = make_csr()
    issued = ca.sign(pem, identity, lifetime)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return x509.load_pem_x509_certificates(issued.chain_pem), key, issued.chain_pem


# --- creation, persistence, loading ------------------------------------------------


def test_load_or_create_makes_root_and_intermediate(tmp_path: Path) -> None:
    state = tmp_path / "state" / "ca"
    ca = CertificateAuthority.load_or_create(state, TRUST_DOMAIN)
    assert {p.name for p in state.iterdir()} == {ROOT_CERT, ROOT_KEY, CA_CERT, CA_KEY}
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    root = x509.load_pem_x509_certificate((state / ROOT_CERT).read_bytes())
    intermediate = x509.load_pem_x509_certificate((state / CA_CERT).read_bytes())
    assert root == ca.root
    assert intermediate == ca.intermediate
    assert ca.trust_bundle_pem == (state / ROOT_CERT).read_bytes()
    assert root.subject == root.issuer
    assert intermediate.issuer == root.subject
    for cert, path_length in ((root, 1), (intermediate, 0)):
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.critical
        assert constraints.value.ca
        assert constraints.value.path_length == path_length
        assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    root.verify_directly_issued_by(root)
    intermediate.verify_directly_issued_by(root)


def test_key_files_are_owner_only(tmp_path: Path) -> None:
    CertificateAuthority.load_or_create(tmp_path, TRUST_DOMAIN)
    for name in (ROOT_KEY, CA_KEY):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name


def test_keys_are_ecdsa_p256_and_match_their_certificates(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path, TRUST_DOMAIN)
    for cert_name, key_name, cert in (
        (ROOT_CERT, ROOT_KEY, ca.root),
        (CA_CERT, CA_KEY, ca.intermediate),
    ):
        key = serialization.load_pem_private_key((tmp_path / key_name).read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey), key_name
        assert isinstance(key.curve, ec.SECP256R1), key_name
        public = cert.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey), cert_name
        assert isinstance(public.curve, ec.SECP256R1), cert_name
        assert _public_der(key.public_key()) == _public_der(public), cert_name


def test_second_start_keeps_the_root(tmp_path: Path) -> None:
    first = CertificateAuthority.load_or_create(tmp_path, TRUST_DOMAIN)
    second = CertificateAuthority.load_or_create(tmp_path, TRUST_DOMAIN)
    assert second.root.serial_number == first.root.serial_number
    assert _public_der(second.root.public_key()) == _public_der(first.root.public_key())
    assert second.intermediate.serial_number == first.intermediate.serial_number
    # A certificate signed after the restart chains to the root from before it.
    leaf = _issue(second)[0][0]
    leaf.verify_directly_issued_by(first.intermediate)


def test_intermediate_not_signed_by_root_is_refused(tmp_path: Path) -> None:
    mine, other = tmp_path / "mine", tmp_path / "other"
    CertificateAuthority.load_or_create(mine, TRUST_DOMAIN)
    CertificateAuthority.load_or_create(other, TRUST_DOMAIN)
    for name in (CA_CERT, CA_KEY):
        shutil.copy(other / name, mine / name)
    with pytest.raises(CaError, match="is not signed by"):
        CertificateAuthority.load_or_create(mine, TRUST_DOMAIN)
    with pytest.raises(CaError, match="is not signed by"):
        CertificateAuthority.load(mine, TRUST_DOMAIN)


def test_missing_ca_key_is_refused(tmp_path: Path) -> None:
    CertificateAuthority.load_or_create(tmp_path, TRUST_DOMAIN)
    (tmp_path / CA_KEY).unlink()
    with pytest.raises(CaError, match="cannot load the CA"):
        CertificateAuthority.load_or_create(tmp_path, TRUST_DOMAIN)


def test_garbage_ca_cert_is_refused(tmp_path: Path) -> None:
    CertificateAuthority.load_or_create(tmp_path, TRUST_DOMAIN)
    (tmp_path / CA_CERT).write_bytes(b"not a certificate")
    with pytest.raises(CaError, match="cannot load the CA"):
        CertificateAuthority.load(tmp_path, TRUST_DOMAIN)


def test_rsa_ca_key_is_refused(tmp_path: Path) -> None:
    CertificateAuthority.load_or_create(tmp_path, TRUST_DOMAIN)
    rsa_key = rsa.generate_private_key(65537, 2048)
    (tmp_path / CA_KEY).write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(CaError, match="must be an EC key"):
        CertificateAuthority.load(tmp_path, TRUST_DOMAIN)


def test_ca_key_of_another_intermediate_is_refused(tmp_path: Path) -> None:
    mine, other = tmp_path / "mine", tmp_path / "other"
    CertificateAuthority.load_or_create(mine, TRUST_DOMAIN)
    CertificateAuthority.load_or_create(other, TRUST_DOMAIN)
    shutil.copy(other / CA_KEY, mine / CA_KEY)
    with pytest.raises(CaError):
        CertificateAuthority.load(mine, TRUST_DOMAIN)


# --- workload certificates -----------------------------------------------------------


def test_workload_certificate_has_exactly_its_spiffe_id(ca: CertificateAuthority) -> None:
    leaf = _issue(ca)[0][0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [
        x509.UniformResourceIdentifier("spiffe://example.org/ns/default/sa/reviews")
    ]


def test_workload_certificate_dns_names_follow_the_spiffe_id(ca: CertificateAuthority) -> None:
    pem, _ = make_csr()
    issued = ca.sign(pem, REVIEWS, dt.timedelta(minutes=5), dns_names=("reviews.default",))
    leaf = x509.load_pem_x509_certificates(issued.chain_pem)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [REVIEWS.uri]
    assert san.get_values_for_type(x509.DNSName) == ["reviews.default"]


def test_workload_certificate_is_a_tls_leaf(ca: CertificateAuthority) -> None:
    leaf = _issue(ca)[0][0]
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is False
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_cert_sign
    assert not usage.crl_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_ecdsa_leaf_does_not_claim_key_encipherment(ca: CertificateAuthority) -> None:
    usage = _issue(ca)[0][0].extensions.get_extension_for_class(x509.KeyUsage).value
    assert not usage.key_encipherment
    assert not usage.data_encipherment


def test_workload_certificate_lives_as_long_as_asked(ca: CertificateAuthority) -> None:
    pem, _ = make_csr()
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    issued = ca.sign(pem, REVIEWS, dt.timedelta(seconds=5))
    after = dt.datetime.now(dt.UTC)
    leaf = x509.load_pem_x509_certificates(issued.chain_pem)[0]
    assert (
        leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(seconds=5) + CLOCK_SKEW
    )
    assert before + dt.timedelta(seconds=5) <= leaf.not_valid_after_utc
    assert leaf.not_valid_after_utc <= after + dt.timedelta(seconds=5)
    assert leaf.not_valid_after_utc == issued.not_after.replace(microsecond=0)
    assert leaf.not_valid_before_utc == issued.not_before.replace(microsecond=0)
    assert leaf.serial_number == issued.serial
    assert issued.identity == REVIEWS


def test_workload_certificate_never_outlives_the_intermediate(ca: CertificateAuthority) -> None:
    pem, _ = make_csr()
    issued = ca.sign(pem, REVIEWS, dt.timedelta(days=10_000))
    leaf = x509.load_pem_x509_certificates(issued.chain_pem)[0]
    assert leaf.not_valid_after_utc == ca.intermediate.not_valid_after_utc


def test_chain_is_leaf_then_intermediate_and_verifies_to_the_root(
    ca: CertificateAuthority,
) -> None:
    chain, key, _ = _issue(ca)
    assert len(chain) == 2
    leaf, intermediate = chain
    assert intermediate == ca.intermediate
    assert _public_der(leaf.public_key()) == _public_der(key.public_key())
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(ca.root)
    ca.root.verify_directly_issued_by(ca.root)
    with pytest.raises(ValueError):
        leaf.verify_directly_issued_by(ca.root)


def test_each_certificate_has_its_own_serial(ca: CertificateAuthority) -> None:
    serials = {_issue(ca)[0][0].serial_number for _ in range(5)}
    assert len(serials) == 5


def _verifier(
    ca: CertificateAuthority, ee_policy: verification.ExtensionPolicy
) -> verification.ClientVerifier:
    return (
        verification.PolicyBuilder()
        .store(verification.Store([ca.root]))
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy
        )
        .build_client_verifier()
    )


def test_rfc5280_path_validation_yields_the_spiffe_id(ca: CertificateAuthority) -> None:
    """cryptography's path validator, with its defaults except the criticality of the
    leaf's subjectAltName, which a SPIFFE ID alone would need."""
    chain = _issue(ca)[0]
    ee_policy = verification.ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None
    )
    verified = _verifier(ca, ee_policy).verify(chain[0], chain[1:])
    assert verified.subjects == [x509.UniformResourceIdentifier(REVIEWS.uri)]
    assert verified.chain == [chain[0], chain[1], ca.root]


def test_path_validation_refuses_a_chain_from_another_ca(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    other = CertificateAuthority.load_or_create(tmp_path / "other", TRUST_DOMAIN)
    chain = _issue(other)[0]
    ee_policy = verification.ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None
    )
    with pytest.raises(verification.VerificationError):
        _verifier(ca, ee_policy).verify(chain[0], chain[1:])


def test_default_path_validation_accepts_the_leaf(ca: CertificateAuthority) -> None:
    chain = _issue(ca)[0]
    _verifier(ca, verification.ExtensionPolicy.webpki_defaults_ee()).verify(chain[0], chain[1:])


# --- a real mutual TLS handshake ---------------------------------------------------------


def _write_identity(
    directory: Path, ca: CertificateAuthority, identity: SpiffeId
) -> tuple[Path, Path]:
    directory.mkdir()
    _, key, chain_pem = _issue(ca, identity)
    (directory / "chain.pem").write_bytes(chain_pem)
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return directory / "chain.pem", directory / "key.pem"


def _context(purpose: int, chain: Path, key: Path, roots: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.load_cert_chain(chain, key)
    context.load_verify_locations(roots)
    context.check_hostname = False  # SPIFFE: the peer is checked by its URI SAN
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _handshake(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> tuple[dict[str, object], dict[str, object]]:
    """Peer certificates as (seen by the server, seen by the client)."""
    left, right = socket.socketpair()
    left.settimeout(10)
    right.settimeout(10)

    def serve() -> dict[str, object]:
        with server_context.wrap_socket(left, server_side=True) as tls:
            peer = tls.getpeercert()
            tls.sendall(b"ok")
            assert peer is not None
            return dict(peer)

    with ThreadPoolExecutor(1) as pool:
        server = pool.submit(serve)
        try:
            with client_context.wrap_socket(right) as tls:
                assert tls.recv(2) == b"ok"
                client_peer = tls.getpeercert()
        finally:
            right.close()
        server_peer = server.result(timeout=10)
    assert client_peer is not None
    return server_peer, dict(client_peer)


def test_mutual_tls_between_two_workloads(ca: CertificateAuthority, tmp_path: Path) -> None:
    roots = tmp_path / "roots.pem"
    roots.write_bytes(ca.trust_bundle_pem)
    server = _context(ssl.PROTOCOL_TLS_SERVER, *_write_identity(tmp_path / "s", ca, REVIEWS), roots)
    client = _context(ssl.PROTOCOL_TLS_CLIENT, *_write_identity(tmp_path / "c", ca, RATINGS), roots)
    seen_by_server, seen_by_client = _handshake(server, client)
    assert seen_by_server["subjectAltName"] == (("URI", RATINGS.uri),)
    assert seen_by_client["subjectAltName"] == (("URI", REVIEWS.uri),)


def test_tls_client_refuses_a_server_from_another_mesh(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    other = CertificateAuthority.load_or_create(tmp_path / "other", TRUST_DOMAIN)
    roots = tmp_path / "roots.pem"
    roots.write_bytes(ca.trust_bundle_pem)
    other_roots = tmp_path / "other-roots.pem"
    other_roots.write_bytes(other.trust_bundle_pem)
    server = _context(
        ssl.PROTOCOL_TLS_SERVER, *_write_identity(tmp_path / "s", other, REVIEWS), other_roots
    )
    client = _context(ssl.PROTOCOL_TLS_CLIENT, *_write_identity(tmp_path / "c", ca, RATINGS), roots)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, client)


def test_intermediate_close_to_expiry_is_renewed_from_the_root(tmp_path: Path) -> None:
    """Makes an intermediate that expires in 10 days, as a year-old CA would have."""
    ca = CertificateAuthority.load_or_create(tmp_path, TRUST_DOMAIN)
    root_key = serialization.load_pem_private_key((tmp_path / "root-key.pem").read_bytes(), None)
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    old = ca_module._ca_certificate(
        ca.intermediate.subject, ca.root.subject, key.public_key(), root_key,
        dt.timedelta(days=10), 0,
    )  # fmt: skip
    (tmp_path / CA_CERT).write_bytes(old.public_bytes(serialization.Encoding.PEM))
    ca_module.write_private(tmp_path / CA_KEY, ca_module._key_pem(key))

    renewed = CertificateAuthority.load_or_create(tmp_path, TRUST_DOMAIN)
    assert renewed.root.serial_number == ca.root.serial_number
    assert renewed.intermediate.serial_number != old.serial_number
    assert renewed.intermediate.not_valid_after_utc - old.not_valid_after_utc > dt.timedelta(
        days=300
    )
    renewed.intermediate.verify_directly_issued_by(renewed.root)


def test_the_state_directory_and_every_parent_made_for_it_are_owner_only(tmp_path: Path) -> None:
    CertificateAuthority.load_or_create(tmp_path / "state" / "ca", "example.org")
    for directory in (tmp_path / "state", tmp_path / "state" / "ca"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
