"""RequestAuthentication with real Envoy sidecars: tokens signed by a key the test
makes, its key set served over HTTP on 127.0.0.1 and fetched by the sidecar. Every way
a token can be wrong is refused with 401; a valid token's claims decide an
AuthorizationPolicy; the verified issuer and subject reach the app and a caller's own
copy of those headers never does; a key set that cannot be fetched refuses every
token (fail closed)."""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sidemesh.envoy.explain import Request, explain
from tests.helpers.harness import Mesh
from tests.helpers.net import free_port
from tests.helpers.tokens import Issuer


@contextmanager
def jwks_server(port: int, body: str) -> Iterator[None]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def _documents(issuer: str, jwks_port: int, dead_port: int) -> list[str]:
    return [
        textwrap.dedent(
            f"""
            apiVersion: sidemesh.io/v1alpha1
            kind: RequestAuthentication
            metadata: {{name: b-jwt}}
            spec:
              targetRefs: [{{name: b}}]
              jwtRules:
                - issuer: {issuer}
                  audiences: [b]
                  jwksUri: http://127.0.0.1:{jwks_port}/jwks.json
                  timeout: 1s
            """
        ),
        textwrap.dedent(
            """
            apiVersion: sidemesh.io/v1alpha1
            kind: AuthorizationPolicy
            metadata: {name: b-by-claims}
            spec:
              targetRefs: [{name: b}]
              rules:
                - from: [{source: {requestPrincipals: ["*"]}}]
                  to: [{operation: {paths: ["/public/*"]}}]
                - when: [{key: "request.auth.claims[groups]", values: [admins]}]
            """
        ),
        textwrap.dedent(
            f"""
            apiVersion: sidemesh.io/v1alpha1
            kind: RequestAuthentication
            metadata: {{name: c-jwt}}
            spec:
              targetRefs: [{{name: c}}]
              jwtRules:
                - issuer: {issuer}
                  jwksUri: http://127.0.0.1:{dead_port}/jwks.json
                  timeout: 1s
            """
        ),
    ]


def _call(mesh: Mesh, host: str, path: str, token: str | None, **headers: str) -> httpx.Response:
    port = mesh.workloads["a-1"].outbound_port
    sent = {"Host": host, **headers}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return httpx.get(f"http://127.0.0.1:{port}{path}", headers=sent, timeout=10)


def test_tokens_are_checked_their_claims_authorize_and_a_missing_key_set_fails_closed(
    tmp_path: Path,
) -> None:
    issuer = Issuer()
    jwks_port, dead_port = free_port(), free_port()
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    mesh.add("b-1", "b")
    mesh.add("c-1", "c")
    mesh.extra_services = [{"name": "c", "ports": [{"port": 7070}]}]
    mesh.policies = _documents(issuer.name, jwks_port, dead_port)
    seen: list[dict[str, str]] = []
    with jwks_server(jwks_port, issuer.jwks()):
        mesh.start_all({"b-1": {"seen": seen}}, route=None)
        good = issuer.token(groups=["users"])
        for _ in range(100):  # the sidecar fetches the key set on its first use
            if _call(mesh, "b", "/public/x", good).status_code == 200:
                break
        seen.clear()

        assert _call(mesh, "b", "/public/x", None).status_code == 401
        wrong = {
            "expired": issuer.token(lifetime_s=-120),
            "not yet valid": issuer.token(not_before_s=600),
            "wrong issuer": issuer.token(issuer="https://other.test"),
            "wrong audience": issuer.token(audience="somebody-else"),
            "bad signature": issuer.token(
                key=rsa.generate_private_key(public_exponent=65537, key_size=2048)
            ),
            "alg none": issuer.token(alg="none"),
            "unknown kid": issuer.token(kid="key-2"),
            "not a token": "abc.def.ghi",
        }
        answers = {
            what: _call(mesh, "b", "/public/x", token).status_code for what, token in wrong.items()
        }
        print(answers)
        assert set(answers.values()) == {401}, answers
        assert seen == []

        # A valid token: its claims decide, its issuer and subject reach the app.
        served = _call(mesh, "b", "/public/x", good, **{"x-sidemesh-jwt-subject": "root"})
        assert served.status_code == 200
        assert seen[-1]["x-sidemesh-jwt-subject"] == "alice"
        assert seen[-1]["x-sidemesh-jwt-issuer"] == issuer.name
        assert "authorization" not in seen[-1]  # the token itself stays with the sidecar
        assert _call(mesh, "b", "/admin", good).status_code == 403
        assert _call(mesh, "b", "/admin", issuer.token(groups=["admins"])).status_code == 200

        # sidemesh explain agrees, from the claims alone.
        assert mesh.control_plane is not None
        aggregator = mesh.control_plane.control_plane.aggregator
        state = mesh.control_plane.call(lambda: aggregator.state)
        assert state is not None

        def explained(path: str, claims: dict[str, object] | None) -> int:
            (backend,) = explain(state, Request("a-1", "b", "GET", path, {}, claims)).backends
            return backend.status or 200

        base = {"iss": issuer.name, "sub": "alice", "aud": "b"}
        assert explained("/public/x", None) == 401
        assert explained("/public/x", {**base, "groups": ["users"]}) == 200
        assert explained("/admin", {**base, "groups": ["users"]}) == 403
        assert explained("/admin", {**base, "groups": ["admins"]}) == 200

        # c's key set cannot be fetched: no token can be checked, none passes.
        assert _call(mesh, "c", "/", good).status_code == 401


@pytest.mark.parametrize("required", [False])
def test_an_optional_token_lets_a_request_through_without_one_or_a_spoofed_header(
    tmp_path: Path, required: bool
) -> None:
    """The key set from a file (``jwksFile``), which the callee's Envoy reads itself."""
    issuer = Issuer()
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    mesh.add("b-1", "b")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(issuer.jwks())
    mesh.policies = [
        textwrap.dedent(
            f"""
            apiVersion: sidemesh.io/v1alpha1
            kind: RequestAuthentication
            metadata: {{name: b-jwt}}
            spec:
              targetRefs: [{{name: b}}]
              required: {str(required).lower()}
              jwtRules: [{{issuer: "{issuer.name}", jwksFile: "{jwks_file}"}}]
            """
        )
    ]
    seen: list[dict[str, str]] = []
    mesh.start_all({"b-1": {"seen": seen}})
    envoy_owned = {
        f"x-envoy-{name}": "/spoofed"
        for name in ("original-path", "decorator-operation", "downstream-service-cluster")
    } | {"x-envoy-original-dst-host": "10.0.0.1:80", "x-envoy-peer-metadata-id": "x"}
    spoofed = _call(mesh, "b", "/", None, **{"x-sidemesh-jwt-subject": "root"}, **envoy_owned)
    assert spoofed.status_code == 200
    assert "x-sidemesh-jwt-subject" not in seen[-1]
    assert not set(envoy_owned) & set(seen[-1]), seen[-1]
    assert _call(mesh, "b", "/", issuer.token()).status_code == 200
    assert seen[-1]["x-sidemesh-jwt-subject"] == "alice"  # checked against the file's keys
    assert _call(mesh, "b", "/", issuer.token(lifetime_s=-120)).status_code == 401
