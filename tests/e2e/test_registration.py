"""Workloads that join the mesh by registering themselves in etcd (real etcd, a real
control plane serving what etcd holds, real sidecars and Envoys): a registered workload
is called by name through the mesh; one whose host dies leaves when its lease expires;
one stopped cleanly leaves at once."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.etcd import EtcdCluster, etcd_missing, single_etcd
from tests.helpers.net import backend, free_port
from tests.helpers.processes import Started
from tests.sources.etcd.test_source import MESH

pytestmark = pytest.mark.skipif(etcd_missing() is not None, reason=str(etcd_missing()))

LEASE_TTL_S = 3


class Registry(Started):
    def __init__(self, tmp_path: Path, etcd: EtcdCluster) -> None:
        super().__init__(tmp_path)
        self.tmp_path = tmp_path
        self.etcd = etcd
        self.state_dir = tmp_path / "state"
        self.xds, self.api, self.ca = free_port(), free_port(), free_port()

    def control_plane(self) -> None:
        mesh = self.tmp_path / "mesh.yaml"
        mesh.write_text(MESH)
        applied = self.run("apply", "-f", str(mesh), "--etcd", self.etcd.endpoints)
        assert applied.returncode == 0, applied.stderr
        self.start(
            _sidemesh(
                "controlplane", "--etcd", self.etcd.endpoints, "--state-dir", str(self.state_dir),
                "--xds-port", str(self.xds), "--api-port", str(self.api), "--ca-port", str(self.ca),
                "--telemetry-interval", "0",
            ),
            "controlplane",
        )  # fmt: skip
        self.until(lambda: self.state() is not None)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_sidemesh(*args), capture_output=True, text=True, timeout=60)

    def sidecar(
        self,
        workload: str,
        service: str,
        port: int,
        app_port: int,
        outbound: int,
        *,
        rest: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Registered in etcd by its agent, or (``rest``) through the control plane."""
        register = ("--register-rest",) if rest else ("--register-etcd", self.etcd.endpoints)
        return self.start(
            _sidemesh(
                "sidecar", "--workload", workload, "--service", service,
                "--control-plane", f"127.0.0.1:{self.xds}", "--ca-address", f"127.0.0.1:{self.ca}",
                "--state-dir", str(self.state_dir), "--socket-dir", str(self.tmp_path / f"s-{workload}"),
                "--workdir", str(self.tmp_path / workload), "--drain-seconds", "0", "--concurrency", "1",
                *register, "--address", "127.0.0.1",
                "--port", str(port), "--app-port", str(app_port), "--outbound-port", str(outbound),
                "--lease-ttl", str(LEASE_TTL_S), "--label", f"host={workload}",
            ),
            f"sidecar-{workload}",
        )  # fmt: skip

    def state(self) -> dict[str, object] | None:
        try:
            reply = httpx.get(f"http://127.0.0.1:{self.api}/v1/state", timeout=2)
        except httpx.HTTPError:
            return None
        return reply.json() if reply.status_code == 200 else None

    def workloads(self) -> set[str]:
        state = self.state() or {}
        return {w["name"] for w in state.get("workloads", [])}  # type: ignore[attr-defined]

    def until(self, check: Callable[[], bool], timeout: float = 30) -> float:
        start = time.monotonic()
        while not check():
            if time.monotonic() - start > timeout:
                pytest.fail(f"never happened:\n{self.logs()}")
            time.sleep(0.05)
        return time.monotonic() - start


def _sidemesh(*args: str) -> list[str]:
    return [sys.executable, "-m", "sidemesh", *args]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    etcd = single_etcd(tmp_path / "etcd")
    made = Registry(tmp_path, etcd)
    try:
        made.control_plane()
        yield made
    finally:
        made.stop()
        etcd.stop()


def _call(outbound: int, host: str = "b") -> httpx.Response:
    with httpx.Client(proxy=f"http://127.0.0.1:{outbound}", timeout=5) as client:
        return client.get(f"http://{host}/")


def test_registered_workloads_are_called_by_name_and_leave_when_gone(registry: Registry) -> None:
    ports = {name: (free_port(), free_port(), free_port()) for name in ("a-1", "b-1", "b-2")}
    with backend("b-1", ports["b-1"][1]), backend("b-2", ports["b-2"][1]):
        for name, (port, app, outbound) in ports.items():
            registry.sidecar(name, name[0], port, app, outbound)
        registry.until(lambda: registry.workloads() == {"a-1", "b-1", "b-2"})
        a_outbound = ports["a-1"][2]
        seen: set[str] = set()

        def answered() -> bool:
            try:
                reply = _call(a_outbound)
            except httpx.HTTPError:
                return False
            if reply.status_code == 200:
                seen.add(reply.json()["workload"])
            return seen == {"b-1", "b-2"}

        registry.until(answered)
        b1, b2 = (
            p for p in registry.processes if "b-1" in " ".join(p.args) or "b-2" in " ".join(p.args)
        )  # type: ignore[arg-type]
        # b-1's host dies: no deregistration, its lease runs out.
        b1.send_signal(signal.SIGKILL)
        left = registry.until(lambda: "b-1" not in registry.workloads(), timeout=LEASE_TTL_S + 5)
        assert left <= LEASE_TTL_S + 2
        # b-2 stops cleanly: it leaves at once.
        b2.send_signal(signal.SIGTERM)
        left = registry.until(lambda: "b-2" not in registry.workloads(), timeout=5)
        assert left < 1.5


def test_a_host_that_cannot_reach_etcd_registers_through_the_control_plane(
    registry: Registry,
) -> None:
    """POST /v1/registrations on the control plane's CA address (TLS checked against
    the mesh's root) with the workload's token, made beforehand as for any other
    host; the control plane writes it into etcd under a lease the posts keep alive."""
    made = registry.run(
        "token", "create", "--workload", "b-3", "--state-dir", str(registry.state_dir)
    )
    assert made.returncode == 0, made.stderr
    caller = registry.run(
        "token", "create", "--workload", "a-1", "--state-dir", str(registry.state_dir)
    )
    assert caller.returncode == 0, caller.stderr
    ca = f"https://127.0.0.1:{registry.ca}/v1/registrations"
    root = str(registry.state_dir / "ca" / "root-cert.pem")
    entry = {"name": "b-3", "service": "b", "address": "127.0.0.1", "port": free_port()}
    with httpx.Client(verify=ssl.create_default_context(cafile=root), timeout=5) as client:
        refused = client.post(ca, json={"workload": entry}, headers={"Authorization": "Bearer x"})
        assert refused.status_code == 401, refused.text
        other = client.post(
            ca,
            json={"workload": entry},
            headers={"Authorization": f"Bearer {caller.stdout.strip()}"},
        )
        assert other.status_code == 403 and "a-1" in other.text, other.text
        bad = client.post(
            ca,
            json={"workload": {**entry, "port": "eighty"}},
            headers={"Authorization": f"Bearer {made.stdout.strip()}"},
        )
        assert bad.status_code == 422 and "workload.port" in bad.text, bad.text
    assert "b-3" not in registry.workloads()

    port, app, outbound = free_port(), free_port(), free_port()
    with backend("b-3", app):
        sidecar = registry.sidecar("b-3", "b", port, app, outbound, rest=True)
        registry.until(lambda: "b-3" in registry.workloads())
        # Kept while it posts (past several TTLs), gone at once on a clean stop.
        time.sleep(LEASE_TTL_S * 2)
        assert "b-3" in registry.workloads()
        sidecar.send_signal(signal.SIGTERM)
        left = registry.until(lambda: "b-3" not in registry.workloads(), timeout=5)
        assert left < 1.5
