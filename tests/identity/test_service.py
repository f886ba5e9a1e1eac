"""The signing service (sidemesh/identity/service.py): a real CA, real bootstrap tokens
and a lookup backed by a dict, as the mesh state would answer it."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from sidemesh.identity.ca import CertificateAuthority
from sidemesh.identity.csr import CsrRejected
from sidemesh.identity.service import SigningService, UnknownWorkload
from sidemesh.identity.spiffe import SpiffeId
from sidemesh.identity.tokens import BootstrapTokens, InvalidToken, WorkloadRef
from tests.identity.test_csr import make_csr

TRUST_DOMAIN = "example.org"
REVIEWS = WorkloadRef("reviews-v1", "default")
GONE = WorkloadRef("reviews-v0", "default")
REVIEWS_ID = SpiffeId(TRUST_DOMAIN, "default", "reviews")
RATINGS_ID = SpiffeId(TRUST_DOMAIN, "default", "ratings")
LIFETIME = dt.timedelta(minutes=10)


@dataclass
class Mesh:
    service: SigningService
    tokens: BootstrapTokens
    token: str
    """The bootstrap token of REVIEWS, which the mesh knows."""
    gone_token: str
    """A valid token of GONE, which the mesh no longer has."""


@pytest.fixture
def mesh(tmp_path: Path) -> Mesh:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca", TRUST_DOMAIN)
    tokens = BootstrapTokens(tmp_path / "tokens")
    token = tokens.ensure(REVIEWS).read_text()
    gone_token = tokens.ensure(GONE).read_text()
    identities = {REVIEWS: REVIEWS_ID}
    service = SigningService(ca, tokens, identities.get, LIFETIME)
    return Mesh(service, tokens, token, gone_token)


async def test_valid_token_and_csr_get_a_certificate(mesh: Mesh) -> None:
    pem, key = make_csr(REVIEWS_ID.uri)
    issued = await mesh.service.sign(mesh.token, pem)
    assert issued.identity == REVIEWS_ID
    assert issued.not_after - issued.not_before == LIFETIME + dt.timedelta(minutes=1)
    leaf, intermediate = x509.load_pem_x509_certificates(issued.chain_pem)
    assert leaf.public_key() == key.public_key()
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [REVIEWS_ID.uri]
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(mesh.service.ca.root)
    assert mesh.service.issued == {REVIEWS: issued}
    assert mesh.service.issued_total == 1
    assert sum(mesh.service.refused.values()) == 0


async def test_renewal_replaces_the_recorded_certificate(mesh: Mesh) -> None:
    first = await mesh.service.sign(mesh.token, make_csr()[0])
    second = await mesh.service.sign(mesh.token, make_csr()[0])
    assert first.serial != second.serial
    assert mesh.service.issued == {REVIEWS: second}
    assert mesh.service.issued_total == 2


async def test_wrong_token_is_refused(mesh: Mesh) -> None:
    with pytest.raises(InvalidToken):
        await mesh.service.sign("not-the-token", make_csr()[0])
    with pytest.raises(InvalidToken):
        await mesh.service.sign("", make_csr()[0])
    assert mesh.service.refused["token"] == 2
    assert mesh.service.issued == {}
    assert mesh.service.issued_total == 0


async def test_valid_token_of_a_workload_not_in_the_mesh_is_refused(mesh: Mesh) -> None:
    with pytest.raises(UnknownWorkload, match=r"reviews-v0\.default"):
        await mesh.service.sign(mesh.gone_token, make_csr()[0])
    assert mesh.service.refused["workload"] == 1
    assert mesh.service.refused["token"] == 0
    assert mesh.service.issued == {}


async def test_csr_for_another_identity_is_refused(mesh: Mesh) -> None:
    with pytest.raises(CsrRejected) as caught:
        await mesh.service.sign(mesh.token, make_csr(RATINGS_ID.uri)[0])
    assert RATINGS_ID.uri in str(caught.value)
    assert REVIEWS_ID.uri in str(caught.value)
    assert mesh.service.refused["csr"] == 1
    assert mesh.service.issued == {}
    assert mesh.service.issued_total == 0


async def test_garbage_csr_is_refused(mesh: Mesh) -> None:
    with pytest.raises(CsrRejected):
        await mesh.service.sign(mesh.token, b"garbage")
    assert mesh.service.refused["csr"] == 1


async def test_token_is_checked_before_the_csr(mesh: Mesh) -> None:
    with pytest.raises(InvalidToken):
        await mesh.service.sign("not-the-token", b"garbage")
    assert mesh.service.refused == {"token": 1}


def _refusal(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    refusals = [r for r in caplog.records if r.name == "sidemesh.identity.service"]
    assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
    assert refusals[0].levelno == logging.WARNING
    caplog.clear()
    return refusals[0]


async def test_every_refusal_is_logged_with_its_reason(
    mesh: Mesh, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(InvalidToken):
        await mesh.service.sign("not-the-token", make_csr()[0])
    assert "unknown bootstrap token" in _refusal(caplog).getMessage()

    with pytest.raises(UnknownWorkload):
        await mesh.service.sign(mesh.gone_token, make_csr()[0])
    assert "reviews-v0.default" in _refusal(caplog).getMessage()

    with pytest.raises(CsrRejected):
        await mesh.service.sign(mesh.token, make_csr(RATINGS_ID.uri)[0])
    message = _refusal(caplog).getMessage()
    assert "reviews-v1.default" in message
    assert RATINGS_ID.uri in message


async def test_no_log_record_ever_contains_a_token(
    mesh: Mesh, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    offered = "wrong-token-that-must-not-be-logged"
    for token, csr in [
        (mesh.token, make_csr(REVIEWS_ID.uri)[0]),
        (mesh.token, make_csr(RATINGS_ID.uri)[0]),
        (mesh.token, b"garbage"),
        (mesh.gone_token, make_csr()[0]),
        (offered, make_csr()[0]),
        (mesh.token[:-1], make_csr()[0]),
    ]:
        with contextlib.suppress(InvalidToken, UnknownWorkload, CsrRejected):
            await mesh.service.sign(token, csr)
    assert len(caplog.records) >= 6
    secrets = [mesh.token, mesh.gone_token, offered, mesh.token[:-1]]
    for record in caplog.records:
        text = " ".join(
            [record.getMessage(), repr(record.args), record.exc_text or "", str(record.exc_info)]
        )
        for secret in secrets:
            assert secret not in text, record.getMessage()
    assert not any(secret in caplog.text for secret in secrets)
