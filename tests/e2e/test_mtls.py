"""Mutual TLS between real sidecars: who may connect, what the app is told, and
certificates rotating under load without a failed request."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sidemesh.identity import CertificateAuthority, SpiffeId
from sidemesh.identity.ca import IssuedCertificate, write_private
from sidemesh.identity.csr import CsrForAnotherIdentity
from sidemesh.identity.service import SigningService
from tests.helpers.harness import Mesh
from tests.helpers.net import free_port, wait_listening
from tests.identity.test_csr import make_csr

CLIENT_ID = "spiffe://test.local/ns/default/sa/a"


def _start(mesh: Mesh) -> None:
    mesh.start_control_plane()
    for name in list(mesh.workloads):
        mesh.start_workload(name)
    mesh.wait_synced()
    mesh.wait_for_route("a-1", "b")


def _plaintext_get(port: int) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/", headers={"Host": "b"}, timeout=5)


def _tls_files(ca: CertificateAuthority, identity: str, directory: Path) -> tuple[Path, Path]:
    """A certificate and key for ``identity`` signed by ``ca``, as files for ssl."""
    csr, key = make_csr()
    issued = ca.sign(csr, SpiffeId.parse(identity), dt.timedelta(minutes=5))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(issued.chain_pem)
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return cert_path, key_path


@pytest.mark.parametrize("xds_mode", ["delta"])
def test_app_gets_the_callers_spiffe_id_and_cannot_forge_it(mesh: Mesh) -> None:
    _start(mesh)
    forged = "By=spiffe://x;URI=spiffe://test.local/ns/default/sa/admin"
    port = mesh.workloads["a-1"].outbound_port
    reply = httpx.get(
        f"http://127.0.0.1:{port}/",
        headers={"Host": "b", "X-Forwarded-Client-Cert": forged},
        timeout=5,
    )
    xfcc = reply.json()["xfcc"]
    assert f"URI={CLIENT_ID}" in xfcc
    assert "sa/admin" not in xfcc
    assert "By=spiffe://test.local/ns/default/sa/b" in xfcc


@pytest.mark.parametrize("xds_mode", ["delta"])
def test_strict_refuses_plaintext_and_foreign_certificates(mesh: Mesh, tmp_path: Path) -> None:
    _start(mesh)
    inbound = mesh.workloads["b-1"].port
    with pytest.raises(httpx.HTTPError):
        _plaintext_get(inbound)

    foreign_ca = CertificateAuthority.load_or_create(tmp_path / "foreign", "test.local")
    cert, key = _tls_files(foreign_ca, CLIENT_ID, tmp_path)
    context = ssl.create_default_context(cafile=str(mesh.state_dir / "ca" / "root-cert.pem"))
    context.check_hostname = False
    context.load_cert_chain(cert, key)
    with (
        pytest.raises((ssl.SSLError, ConnectionError, httpx.HTTPError)),
        httpx.Client(verify=context, timeout=5) as client,
    ):
        client.get(f"https://127.0.0.1:{inbound}/", headers={"Host": "b"})

    # The mesh's own client still gets through.
    assert mesh.request("a-1", "b").json()["workload"] == "b-1"


@pytest.mark.parametrize("xds_mode", ["delta"])
def test_client_refuses_a_server_with_another_mesh_identity(mesh: Mesh, tmp_path: Path) -> None:
    """b-1's endpoint is taken by an impostor holding a valid mesh certificate, but for
    identity ``a``: a-1's sidecar must refuse to send it b's traffic."""
    mesh.start_control_plane()
    mesh.start_workload("a-1")
    mesh.wait_synced()
    cp = mesh.control_plane
    assert cp is not None and cp.control_plane.ca is not None
    cert, key = _tls_files(cp.control_plane.ca, CLIENT_ID, tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.load_verify_locations(mesh.state_dir / "ca" / "root-cert.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    handshakes: list[str] = []
    with _tls_server(context, mesh.workloads["b-1"].port, handshakes):
        reply = mesh.request("a-1", "b")
    assert reply.status_code == 503
    assert handshakes, "the impostor was never contacted"
    assert "ok" not in handshakes, "a-1 completed a handshake with the wrong identity"


@pytest.mark.parametrize("xds_mode", ["delta"])
def test_permissive_accepts_plaintext_and_mesh_still_uses_mtls(mesh: Mesh) -> None:
    mesh.service_mtls["b"] = "PERMISSIVE"
    _start(mesh)
    plain = _plaintext_get(mesh.workloads["b-1"].port)
    assert plain.status_code == 200
    assert "xfcc" not in plain.json()
    assert f"URI={CLIENT_ID}" in mesh.request("a-1", "b").json()["xfcc"]


@pytest.mark.parametrize("xds_mode", ["delta"])
def test_disable_is_plaintext_both_ways(mesh: Mesh) -> None:
    mesh.service_mtls["b"] = "DISABLE"
    _start(mesh)
    assert _plaintext_get(mesh.workloads["b-1"].port).status_code == 200
    assert "xfcc" not in mesh.request("a-1", "b").json()


@pytest.mark.parametrize("xds_mode", ["delta"])
def test_certificate_requests_need_the_right_token(mesh: Mesh) -> None:
    _start(mesh)
    cp = mesh.control_plane
    assert cp is not None
    url = f"https://127.0.0.1:{cp.control_plane.ca_port}/v1/certificates"
    verify = ssl.create_default_context(cafile=str(mesh.state_dir / "ca" / "root-cert.pem"))
    csr = make_csr()[0].decode()
    refused = httpx.post(
        url, json={"csr": csr}, headers={"Authorization": "Bearer nope"}, verify=verify
    )
    assert refused.status_code == 401
    token = (mesh.state_dir / "tokens" / "a-1.default.token").read_text()
    stolen = httpx.post(
        url,
        json={"csr": make_csr("spiffe://test.local/ns/default/sa/b")[0].decode()},
        headers={"Authorization": f"Bearer {token}"},
        verify=verify,
    )
    assert stolen.status_code == 403
    assert "sa/b" in stolen.json()["detail"]
    metrics = httpx.get(mesh.api_url + "/metrics").text
    assert 'sidemesh_certificates_refused_total{reason="token"} 1.0' in metrics
    assert 'sidemesh_certificates_refused_total{reason="csr"} 1.0' in metrics


@pytest.mark.parametrize("xds_mode", ["delta"])
def test_proxies_command_shows_identity_serial_and_expiry(mesh: Mesh) -> None:
    _start(mesh)

    def run(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "sidemesh", "proxies", "--api", mesh.api_url, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    listed = {p["node"]: p for p in json.loads(run("-o", "json"))["proxies"]}
    cert = listed["sidecar~a-1~default"]["certificate"]
    assert cert["identity"] == CLIENT_ID
    assert 3500 < cert["expiresInSeconds"] <= 3600
    table = run()
    assert "sidecar~a-1~default" in table and CLIENT_ID in table and cert["serial"][:16] in table


@pytest.mark.parametrize("xds_mode", ["delta"])
def test_keys_stay_private(mesh: Mesh) -> None:
    _start(mesh)
    for path in [
        mesh.state_dir / "ca" / "root-key.pem",
        mesh.state_dir / "ca" / "ca-key.pem",
        mesh.state_dir / "serving" / "key.pem",
        *(mesh.state_dir / "tokens").glob("*.token"),
    ]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    cp = mesh.control_plane
    assert cp is not None
    cache = cp.control_plane.cache
    for node in cache.watched_nodes():
        snapshot = cache.get(node)
        assert snapshot is not None
        for rtype in snapshot.resources.by_type:
            for res in snapshot.resources[rtype].values():
                assert b"PRIVATE KEY" not in res.body.value, res.name
    for name in mesh.workloads:
        log = mesh.sidecar_log(name)
        assert "PRIVATE KEY" not in log and "Bearer" not in log


def test_rotation_under_load_drops_nothing(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path, "delta", cert_lifetime_s=4.0)
    mesh.add("a-1", "a")
    mesh.add("b-1", "b")
    try:
        _start(mesh)
        sent = failed = 0
        failures: list[str] = []
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=5) as client:
            port = mesh.workloads["a-1"].outbound_port
            while time.monotonic() < deadline and sent < 100_000:
                sent += 1
                try:
                    reply = client.get(f"http://127.0.0.1:{port}/", headers={"Host": "b"})
                    if reply.status_code != 200:
                        failed += 1
                        failures.append(f"{reply.status_code} {reply.text[:200]}")
                except httpx.HTTPError as exc:
                    failed += 1
                    failures.append(repr(exc))
        rotations = {name: _rotations(mesh.sidecar_log(name)) for name in mesh.workloads}
        print(f"rotation under load: {sent} requests, {failed} failed, rotations {rotations}")
        assert failed == 0, failures[:5]
        # A 4 s lifetime renewed at 50-80% of it: about a dozen rotations in 30 s.
        assert all(5 <= count <= 25 for count in rotations.values()), rotations
    finally:
        mesh.close()


@pytest.mark.parametrize("xds_mode", ["delta"])
def test_control_plane_restart_keeps_root_and_traffic(mesh: Mesh) -> None:
    _start(mesh)
    root = (mesh.state_dir / "ca" / "root-cert.pem").read_bytes()
    cp = mesh.control_plane
    assert cp is not None
    ports = (cp.control_plane.xds_port, cp.control_plane.api_port, cp.control_plane.ca_port)
    cp.stop()
    assert mesh.request("a-1", "b").status_code == 200  # sidecars keep their last config
    mesh.restart_control_plane(*ports)
    assert (mesh.state_dir / "ca" / "root-cert.pem").read_bytes() == root
    mesh.wait_synced()
    assert mesh.request("a-1", "b").json()["workload"] == "b-1"
    # The restarted CA still signs for the same tokens, chained to the same root.
    new = mesh.control_plane
    assert new is not None and new.control_plane.signing is not None
    token = (mesh.state_dir / "tokens" / "a-1.default.token").read_text()
    signing = new.control_plane.signing

    def sign(csr: bytes) -> IssuedCertificate:
        return asyncio.run_coroutine_threadsafe(signing.sign(token, csr), new.loop).result(10)

    issued = sign(make_csr()[0])
    chain = x509.load_pem_x509_certificates(issued.chain_pem)
    chain[1].verify_directly_issued_by(x509.load_pem_x509_certificate(root))
    with pytest.raises(CsrForAnotherIdentity):
        sign(make_csr("spiffe://test.local/ns/default/sa/b")[0])
    assert isinstance(new.control_plane.signing, SigningService)


def _rotations(log: str) -> int:
    count = 0
    for line in log.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("rotation"):
                count = max(count, int(entry["rotation"]))
    return count


class _Impostor(threading.Thread):
    def __init__(self, context: ssl.SSLContext, port: int, outcomes: list[str]) -> None:
        super().__init__(daemon=True)
        self.context = context
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.outcomes = outcomes
        self.stopped = False

    def run(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self.outcomes.append("ok")
                    tls.recv(1024)
            except (ssl.SSLError, OSError) as exc:
                self.outcomes.append(type(exc).__name__)


@contextmanager
def _tls_server(context: ssl.SSLContext, port: int, outcomes: list[str]) -> Iterator[None]:
    """An impostor TLS server on ``port`` for the duration of the block."""
    thread = _Impostor(context, port, outcomes)
    thread.start()
    try:
        yield
    finally:
        thread.stopped = True
        thread.join(timeout=5)
        thread.sock.close()


def test_an_unauthenticated_client_of_a_strict_tcp_port_never_reaches_the_app(
    tmp_path: Path,
) -> None:
    """The callee's sidecar opens its connection to the app only after the client's
    TLS handshake succeeded: a plaintext client or one without a mesh certificate
    causes no connection to the app at all."""
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a").upstreams = {"db": free_port()}
    mesh.add("db-1", "db")
    mesh.extra_services = [{"name": "db", "ports": [{"port": 5432, "protocol": "tcp"}]}]
    accepted: list[socket.socket] = []
    server = socket.create_server(("127.0.0.1", mesh.workloads["db-1"].app_port))
    server.settimeout(0.2)

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(connection)
            connection.sendall(b"hello\n")

    stop = threading.Event()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        mesh.start_control_plane()
        mesh.start_app("a-1")
        for name in mesh.workloads:
            mesh.start_sidecar(name)
        mesh.wait_synced()
        endpoint = mesh.workloads["db-1"].port
        wait_listening(endpoint)  # a connection opened and closed reaches no app either
        with socket.create_connection(("127.0.0.1", endpoint), timeout=5) as raw:
            raw.sendall(b"plaintext, no TLS\r\n")
            raw.settimeout(2)
            with contextlib.suppress(OSError):
                raw.recv(100)
        untrusted = ssl.create_default_context()
        untrusted.check_hostname, untrusted.verify_mode = False, ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", endpoint), timeout=5) as raw,
            contextlib.suppress(OSError),
            untrusted.wrap_socket(raw) as tls,
        ):
            tls.sendall(b"no client certificate\r\n")
            tls.recv(100)
        time.sleep(0.5)
        assert accepted == []
        # A mesh caller gets through (its upstream port, then mTLS).
        deadline = time.monotonic() + 20
        while not accepted:
            assert time.monotonic() < deadline, "the mesh caller never reached the TCP app"
            with (
                contextlib.suppress(OSError),
                socket.create_connection(
                    ("127.0.0.1", mesh.workloads["a-1"].upstreams["db"]), timeout=5
                ) as caller,
            ):
                caller.settimeout(2)
                caller.recv(100)
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
        for connection in accepted:
            connection.close()
