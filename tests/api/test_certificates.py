"""The certificate signing endpoint (sidemesh/api/certificates.py), in process through
fastapi's TestClient, with a real CA and real bootstrap tokens behind it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from sidemesh.api.certificates import create_signing_app
from sidemesh.identity.ca import CertificateAuthority
from sidemesh.identity.service import SigningService
from sidemesh.identity.spiffe import SpiffeId
from sidemesh.identity.tokens import BootstrapTokens, WorkloadRef
from tests.identity.test_csr import make_csr

TRUST_DOMAIN = "example.org"
REVIEWS = WorkloadRef("reviews-v1", "default")
GONE = WorkloadRef("reviews-v0", "default")
REVIEWS_ID = SpiffeId(TRUST_DOMAIN, "default", "reviews")
RATINGS_ID = SpiffeId(TRUST_DOMAIN, "default", "ratings")
URL = "/v1/certificates"


@dataclass
class Api:
    client: TestClient
    service: SigningService
    token: str
    gone_token: str


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca", TRUST_DOMAIN)
    tokens = BootstrapTokens(tmp_path / "tokens")
    token = tokens.ensure(REVIEWS).read_text()
    gone_token = tokens.ensure(GONE).read_text()
    service = SigningService(ca, tokens, {REVIEWS: REVIEWS_ID}.get, dt.timedelta(minutes=10))
    with TestClient(create_signing_app(service)) as client:
        yield Api(client, service, token, gone_token)


def _post(api: Api, csr: bytes, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    reply: httpx.Response = api.client.post(URL, json={"csr": csr.decode()}, headers=headers)
    return reply


def test_valid_request_gets_a_chain_and_the_trust_bundle(api: Api) -> None:
    csr, key = make_csr(REVIEWS_ID.uri)
    reply = api.client.post(
        URL, json={"csr": csr.decode()}, headers={"Authorization": f"Bearer {api.token}"}
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"certificateChain", "trustBundle", "identity", "serial", "notAfter"}
    assert body["identity"] == REVIEWS_ID.uri

    leaf, intermediate = x509.load_pem_x509_certificates(body["certificateChain"].encode())
    (root,) = x509.load_pem_x509_certificates(body["trustBundle"].encode())
    assert root == api.service.ca.root
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    assert leaf.public_key() == key.public_key()
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [REVIEWS_ID.uri]
    assert int(body["serial"], 16) == leaf.serial_number
    not_after = dt.datetime.fromisoformat(body["notAfter"])
    assert not_after.tzinfo is not None
    assert not_after.replace(microsecond=0) == leaf.not_valid_after_utc
    assert api.service.issued_total == 1


def test_bearer_scheme_is_case_insensitive(api: Api) -> None:
    reply = _post(api, make_csr()[0], f"bearer {api.token}")
    assert reply.status_code == 200, reply.text


def test_trust_bundle_endpoint(api: Api) -> None:
    reply = api.client.get("/v1/trust-bundle")
    assert reply.status_code == 200
    assert reply.json() == {"trustBundle": api.service.ca.trust_bundle_pem.decode()}


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Bearer wrong-token", "Basic dXNlcjpwYXNz"],
    ids=["missing", "empty", "scheme-only", "scheme-and-space", "wrong-token", "basic"],
)
def test_no_valid_token_is_401(api: Api, authorization: str | None) -> None:
    reply = _post(api, make_csr(REVIEWS_ID.uri)[0], authorization)
    assert reply.status_code == 401, reply.text
    assert "Bearer" in reply.json()["detail"]
    assert api.service.refused["token"] == 1
    assert api.service.issued_total == 0


def test_401_names_the_bearer_scheme(api: Api) -> None:
    reply = _post(api, make_csr()[0], None)
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")


def test_real_token_under_another_scheme_is_401(api: Api) -> None:
    reply = _post(api, make_csr()[0], f"Token {api.token}")
    assert reply.status_code == 401
    assert api.token not in reply.text


def test_another_identity_is_403(api: Api) -> None:
    reply = _post(api, make_csr(RATINGS_ID.uri)[0], f"Bearer {api.token}")
    assert reply.status_code == 403, reply.text
    detail = reply.json()["detail"]
    assert RATINGS_ID.uri in detail
    assert REVIEWS_ID.uri in detail
    assert api.service.refused["csr"] == 1
    assert api.service.issued_total == 0


def test_workload_not_in_the_mesh_is_403(api: Api) -> None:
    reply = _post(api, make_csr()[0], f"Bearer {api.gone_token}")
    assert reply.status_code == 403, reply.text
    assert "reviews-v0.default" in reply.json()["detail"]
    assert api.service.refused["workload"] == 1


def test_unknown_fields_are_422(api: Api) -> None:
    csr = make_csr()[0].decode()
    reply = api.client.post(
        URL,
        json={"csr": csr, "identity": RATINGS_ID.uri},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert reply.status_code == 422, reply.text
    assert any(error["loc"][-1] == "identity" for error in reply.json()["detail"])
    assert api.service.issued_total == 0
    assert api.service.refused == {"malformed": 1}


@pytest.mark.parametrize(
    "body", [{}, {"csr": 42}, []], ids=["no-csr", "csr-not-text", "not-object"]
)
def test_malformed_body_is_422(api: Api, body: object) -> None:
    reply = api.client.post(URL, json=body, headers={"Authorization": f"Bearer {api.token}"})
    assert reply.status_code == 422, reply.text
    assert api.service.issued_total == 0
    assert api.service.refused["malformed"] == 1  # counted with every other refusal


def test_signing_route_is_documented(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert "post" in paths[URL]
    assert "get" in paths["/v1/trust-bundle"]


def test_a_control_plane_without_etcd_takes_no_registration_and_says_why(api: Api) -> None:
    reply = api.client.post(
        "/v1/registrations",
        json={"workload": {"name": "reviews-v1", "service": "reviews", "port": 9080}},
        headers={"Authorization": f"Bearer {api.token}"},
    )
    assert reply.status_code == 404
    assert "--etcd" in reply.json()["detail"]
