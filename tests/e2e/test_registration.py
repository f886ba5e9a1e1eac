"""Workloads that join the mesh by registering themselves in etcd (real etcd, a real
control plane serving what etcd holds, real sidecars and Envoys): a registered workload
is called by name through the mesh; one whose host dies leaves when its lease expires;
one stopped cleanly leaves at once."""

from __future__ import annotations

import signal
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
        self, workload: str, service: str, port: int, app_port: int, outbound: int
    ) -> subprocess.Popen[bytes]:
        return self.start(
            _sidemesh(
                "sidecar", "--workload", workload, "--service", service,
                "--control-plane", f"127.0.0.1:{self.xds}", "--ca-address", f"127.0.0.1:{self.ca}",
                "--state-dir", str(self.state_dir), "--socket-dir", str(self.tmp_path / f"s-{workload}"),
                "--workdir", str(self.tmp_path / workload), "--drain-seconds", "0", "--concurrency", "1",
                "--register-etcd", self.etcd.endpoints, "--address", "127.0.0.1",
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
