"""The mesh's certificate authority: a root (kept for the life of the state
directory) and an intermediate that signs short-lived workload certificates."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sidemesh.errors import SidemeshError
from sidemesh.identity.csr import check_csr
from sidemesh.identity.spiffe import SpiffeId

log = logging.getLogger(__name__)

ROOT_LIFETIME = dt.timedelta(days=3650)
INTERMEDIATE_LIFETIME = dt.timedelta(days=365)
INTERMEDIATE_RENEW_BEFORE = dt.timedelta(days=30)
"""On start, an intermediate closer than this to expiry is replaced (if the root key
is here): workload certificates never outlive their issuer."""
CLOCK_SKEW = dt.timedelta(minutes=1)
"""Certificates start a little in the past so a peer whose clock lags accepts them."""

ROOT_CERT, ROOT_KEY = "root-cert.pem", "root-key.pem"
CA_CERT, CA_KEY = "ca-cert.pem", "ca-key.pem"


class CaError(SidemeshError):
    """The CA cannot be loaded or created."""


@dataclass(frozen=True)
class IssuedCertificate:
    identity: SpiffeId
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    chain_pem: bytes
    """Leaf then intermediate: what a workload presents."""


def make_private_dir(path: Path) -> None:
    """``path`` and every directory made on the way to it, owner-only (0700): the
    state directory holds the CA's keys and the bootstrap tokens, so not even its
    listing is for others (``mkdir(parents=True, mode=...)`` gives the mode to the last
    directory only)."""
    missing = []
    for directory in (path, *path.parents):
        if directory.exists():
            break
        missing.append(directory)
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(0o700)  # whatever the umask made of it


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by its owner only (0600) from the first byte on: into a
    new file (never through a symlink or into a file with looser rights), then renamed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_private_once(path: Path, data: bytes) -> bool:
    """``write_private``, unless ``path`` exists: False then, and it is left as it is.
    Atomic against another process doing the same (a replica of the control plane
    sharing the directory): exactly one of them writes."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str, trust_domain: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signing_key: ec.EllipticCurvePrivateKey,
    lifetime: dt.timedelta,
    path_length: int,
) -> x509.Certificate:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(signing_key, hashes.SHA256())
    )


class CertificateAuthority:
    """Signs workload certificates with the intermediate; trust is anchored in the root."""

    def __init__(
        self,
        trust_domain: str,
        root: x509.Certificate,
        intermediate: x509.Certificate,
        intermediate_key: ec.EllipticCurvePrivateKey,
    ) -> None:
        self.trust_domain = trust_domain
        self.root = root
        self.intermediate = intermediate
        self._key = intermediate_key

    # --- creation and loading -----------------------------------------------
    @classmethod
    def load_or_create(cls, state_dir: Path, trust_domain: str) -> CertificateAuthority:
        """The CA kept in ``state_dir``; made there (root and intermediate) on first start.
        The root stays the same across restarts: deleting the directory is the only way
        to get a new one."""
        make_private_dir(state_dir)
        if (state_dir / ROOT_CERT).exists():
            return cls.load(state_dir, trust_domain)
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = _name(f"sidemesh root CA ({trust_domain})", trust_domain)
        root = _ca_certificate(
            root_name, root_name, root_key.public_key(), root_key, ROOT_LIFETIME, 1
        )
        ca_key = ec.generate_private_key(ec.SECP256R1())
        intermediate = _ca_certificate(
            _name(f"sidemesh intermediate CA ({trust_domain})", trust_domain),
            root_name,
            ca_key.public_key(),
            root_key,
            INTERMEDIATE_LIFETIME,
            0,
        )
        # Made aside, then renamed into place: replicas of the control plane starting
        # at once on one directory end up with the same CA (the first rename wins; a
        # later one finds the directory full and loads the winner's).
        tmp = state_dir.with_name(f".{state_dir.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        make_private_dir(tmp)
        write_private(tmp / ROOT_KEY, _key_pem(root_key))
        write_private(tmp / CA_KEY, _key_pem(ca_key))
        (tmp / ROOT_CERT).write_bytes(root.public_bytes(serialization.Encoding.PEM))
        (tmp / CA_CERT).write_bytes(intermediate.public_bytes(serialization.Encoding.PEM))
        try:
            os.rename(tmp, state_dir)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return cls.load(state_dir, trust_domain)
        log.info("created a new mesh root CA in %s (serial %x)", state_dir, root.serial_number)
        return cls(trust_domain, root, intermediate, ca_key)

    @classmethod
    def load(
        cls,
        directory: Path,
        trust_domain: str,
    ) -> CertificateAuthority:
        """Load root-cert.pem, ca-cert.pem and ca-key.pem (the operator's own CA may be
        put there). The intermediate must be signed by the root."""
        try:
            root = x509.load_pem_x509_certificate((directory / ROOT_CERT).read_bytes())
            intermediate = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
            key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
        except (OSError, ValueError) as exc:
            raise CaError(f"cannot load the CA from {directory}: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CaError(f"{directory / CA_KEY}: the CA key must be an EC key")
        try:
            intermediate.verify_directly_issued_by(root)
        except Exception as exc:  # cryptography raises several kinds for a bad signature
            raise CaError(
                f"{directory / CA_CERT} is not signed by {directory / ROOT_CERT}"
            ) from exc
        if public_key_der(key.public_key()) != public_key_der(intermediate.public_key()):
            raise CaError(f"{directory / CA_KEY} is not the key of {directory / CA_CERT}")
        if intermediate.not_valid_after_utc - _now() < INTERMEDIATE_RENEW_BEFORE:
            intermediate, key = _renew_intermediate(directory, root, trust_domain)
        return cls(trust_domain, root, intermediate, key)

    # --- what peers need ------------------------------------------------------
    @property
    def trust_bundle_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    # --- signing -------------------------------------------------------------
    def check_valid(self) -> None:
        """Raise ``CaError`` if the intermediate has expired (nothing it signs is valid)."""
        if _now() >= self.intermediate.not_valid_after_utc:
            raise CaError(
                f"the intermediate CA expired on {self.intermediate.not_valid_after_utc:%Y-%m-%d}; "
                "restart the control plane to renew it from the root"
            )

    def sign(
        self,
        csr_pem: bytes,
        identity: SpiffeId,
        lifetime: dt.timedelta,
        dns_names: tuple[str, ...] = (),
    ) -> IssuedCertificate:
        """Sign a workload's CSR for ``identity`` (which the caller proved). Raises
        ``CsrRejected`` if the CSR is malformed or asks for another identity."""
        self.check_valid()
        csr = check_csr(csr_pem, identity)
        now = _now()
        not_after = min(now + lifetime, self.intermediate.not_valid_after_utc)
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri)]
        sans += [x509.DNSName(name) for name in dns_names]
        serial = x509.random_serial_number()
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, identity.trust_domain)])
            )
            .issuer_name(self.intermediate.subject)
            .public_key(csr.public_key())
            .serial_number(serial)
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(not_after)
            # The subject is not empty, so the SAN is not critical (RFC 5280 4.2.1.6).
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,  # ECDSA keys sign; they never encipher
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        chain = cert.public_bytes(serialization.Encoding.PEM) + self.intermediate.public_bytes(
            serialization.Encoding.PEM
        )
        return IssuedCertificate(identity, serial, now - CLOCK_SKEW, not_after, chain)


def serving_certificate(
    ca: CertificateAuthority, identity: SpiffeId, hosts: tuple[str, ...], lifetime: dt.timedelta
) -> tuple[bytes, bytes]:
    """A key and certificate chain for the control plane's own TLS endpoint: it is a
    workload of the mesh too, reached by IP address or host name."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity.uri)]
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("sidemesh control plane", ca.trust_domain))
        .issuer_name(ca.intermediate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + lifetime, ca.intermediate.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca._key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca.intermediate.public_bytes(
        serialization.Encoding.PEM
    )
    return chain, _key_pem(key)


def _renew_intermediate(
    directory: Path, root: x509.Certificate, trust_domain: str
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        root_key = serialization.load_pem_private_key((directory / ROOT_KEY).read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise CaError(
            f"the intermediate in {directory / CA_CERT} expires soon and the root key "
            f"{directory / ROOT_KEY} is not available to renew it: {exc}"
        ) from exc
    if not isinstance(root_key, ec.EllipticCurvePrivateKey):
        raise CaError(f"{directory / ROOT_KEY}: the root key must be an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    intermediate = _ca_certificate(
        _name(f"sidemesh intermediate CA ({trust_domain})", trust_domain),
        root.subject,
        key.public_key(),
        root_key,
        INTERMEDIATE_LIFETIME,
        0,
    )
    write_private(directory / CA_KEY, _key_pem(key))
    (directory / CA_CERT).write_bytes(intermediate.public_bytes(serialization.Encoding.PEM))
    log.warning(
        "renewed the intermediate CA in %s (new serial %x, expires %s)",
        directory,
        intermediate.serial_number,
        intermediate.not_valid_after_utc.date(),
    )
    return intermediate, key


def public_key_der(key: object) -> bytes:
    """A public key's DER bytes: two keys are the same key when these are equal."""
    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
