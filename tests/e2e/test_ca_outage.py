"""The control plane (CA included) away for longer than a certificate's lifetime: open
connections keep serving, new ones fail closed (never in plaintext), and every sidecar
holds a valid certificate again within seconds of the CA's return."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest

from sidemesh.identity.tokens import WorkloadRef
from tests.helpers.harness import Mesh

LIFETIME_S = 3.0
EXPIRED_FOR_S = 4.0
"""How long to stay away once every certificate has expired: long enough for the old
doubling backoff (1, 2, 4 s...) to have grown past the recovery target."""
RECOVERY_TARGET_S = 3.0
CLIENT_ID = "spiffe://test.local/ns/default/sa/a"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _admin(mesh: Mesh, name: str, path: str) -> httpx.Response:
    return mesh.workloads[name].admin(path)


def _certificates(mesh: Mesh, name: str) -> list[tuple[int, dt.datetime]]:
    """(serial, expiry) of the workload certificate in each of an Envoy's TLS contexts."""
    found = []
    for context in _admin(mesh, name, "/certs").json()["certificates"]:
        for leaf in context.get("cert_chain", [])[:1]:  # the rest is the chain up to the root
            expiry = dt.datetime.fromisoformat(leaf["expiration_time"])
            found.append((int(leaf["serial_number"], 16), expiry))
    return found


def _all_expired(mesh: Mesh) -> bool:
    now = _now()
    return all(
        certs and all(expiry <= now for _, expiry in certs)
        for certs in (_certificates(mesh, name) for name in mesh.workloads)
    )


def _all_valid(mesh: Mesh) -> bool:
    """Every Envoy serves only unexpired certificates, each one the running CA issued to
    that workload (the first control plane's would have expired)."""
    cp = mesh.control_plane
    assert cp is not None and cp.control_plane.signing is not None
    signing = cp.control_plane.signing
    issued = cp.call(lambda: dict(signing.issued))
    now = _now()
    for name in mesh.workloads:
        ours = issued.get(WorkloadRef(name, "default"))
        certs = _certificates(mesh, name)
        if ours is None or not certs:
            return False
        if any(expiry <= now or serial != ours.serial for serial, expiry in certs):
            return False
    return True


def _verify_errors(mesh: Mesh, name: str) -> int:
    """Handshakes an Envoy refused because the peer's certificate did not verify."""
    total = 0
    for line in _admin(mesh, name, "/stats?filter=ssl.fail_verify_error").text.splitlines():
        total += int(line.rsplit(":", 1)[1])
    return total


class _CaWatcher(threading.Thread):
    """Records the moment the CA on ``port`` completes a TLS handshake again."""

    def __init__(self, port: int, root: Path) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.context = ssl.create_default_context(cafile=str(root))
        self.context.check_hostname = False
        self.back_at: float | None = None
        self.stopped = False

    def run(self) -> None:
        while not self.stopped and self.back_at is None:
            try:
                with (
                    socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
                    self.context.wrap_socket(sock),
                ):
                    self.back_at = time.monotonic()
            except OSError:
                time.sleep(0.005)


def test_sidecars_hold_valid_certificates_within_3s_of_the_cas_return(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path, "delta", cert_lifetime_s=LIFETIME_S)
    mesh.add("a-1", "a").calls = ["b"]  # held from the start: no lookup while the CA is away
    mesh.add("b-1", "b")
    mesh.add("b-2", "b")
    try:
        mesh.start_control_plane()
        for name in list(mesh.workloads):
            mesh.start_workload(name)
        mesh.wait_synced()
        mesh.wait_for_route("b-1", "a")
        cp = mesh.control_plane
        assert cp is not None
        ports = (cp.control_plane.xds_port, cp.control_plane.api_port, cp.control_plane.ca_port)
        # One connection from the test to b-1's sidecar keeps its requests on one Envoy
        # worker, hence on one upstream connection to a-1, opened before the outage.
        # a-1 has sent nothing to b: its first request there needs a new connection.
        with httpx.Client(timeout=5) as held:
            to_a = f"http://127.0.0.1:{mesh.workloads['b-1'].outbound_port}/"
            assert held.get(to_a, headers={"Host": "a"}).status_code == 200

            cp.stop()
            stopped_at = time.monotonic()
            while not _all_expired(mesh):
                assert time.monotonic() < stopped_at + LIFETIME_S + 10, "certificates never expired"
                time.sleep(0.05)
            expired_at = time.monotonic()

            # Expired: the open connection keeps serving, a new one fails closed.
            assert held.get(to_a, headers={"Host": "a"}).json()["workload"] == "a-1"
            refused_before = _verify_errors(mesh, "a-1")
            fresh = mesh.request("a-1", "b")
            assert fresh.status_code == 503, fresh.text
            assert _verify_errors(mesh, "a-1") > refused_before, "no TLS handshake was refused"
            with pytest.raises(httpx.HTTPError):  # and b's sidecar takes no plaintext
                httpx.get(f"http://127.0.0.1:{mesh.workloads['b-1'].port}/", timeout=2)

        time.sleep(max(0.0, expired_at + EXPIRED_FOR_S - time.monotonic()))
        watcher = _CaWatcher(ports[2], mesh.state_dir / "ca" / "root-cert.pem")
        watcher.start()
        away = time.monotonic() - stopped_at
        mesh.restart_control_plane(*ports)
        while not _all_valid(mesh):
            assert time.monotonic() < stopped_at + 40, "sidecars did not get new certificates"
            time.sleep(0.02)
        valid_at = time.monotonic()
        watcher.stopped = True
        watcher.join(timeout=5)
        assert watcher.back_at is not None
        recovery = valid_at - watcher.back_at
        print(
            f"\ncontrol plane away {away:.1f}s (certificates expired for "
            f"{watcher.back_at - expired_at:.1f}s): every sidecar valid {recovery:.2f}s "
            "after the CA answered again"
        )

        reply = mesh.request("a-1", "b")
        assert reply.status_code == 200, reply.text
        assert f"URI={CLIENT_ID}" in reply.json()["xfcc"]
        assert recovery <= RECOVERY_TARGET_S
    finally:
        mesh.close()
