"""``sidemesh sidecar`` runs a real Envoy, forwards signals and exits as Envoy did."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sidemesh.agent.envoy_binary import find_envoy
from sidemesh.agent.sidecar import write_bootstrap
from sidemesh.envoy import ProxyId
from sidemesh.envoy.bootstrap import BootstrapParams
from sidemesh.errors import EnvoyNotFound
from tests.helpers.harness import Mesh, WorkloadSpec


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    m = Mesh(tmp_path)
    m.add("a-1", "a")
    m.start_control_plane()
    try:
        yield m
    finally:
        m.close()


def _envoy_child(pid: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("Envoy was not started")


def _wait_answering(spec: WorkloadSpec, timeout: float = 20) -> None:
    """Until Envoy's admin answers (on its Unix socket): Envoy has set up its own
    signal handling by then."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            spec.admin("/ready")
            return
        except httpx.HTTPError:
            assert time.monotonic() < deadline, f"{spec.admin_socket} never answered"
            time.sleep(0.05)


def test_sigterm_is_forwarded_and_envoys_status_returned(mesh: Mesh) -> None:
    sidecar = mesh.start_sidecar("a-1")
    envoy_pid = _envoy_child(sidecar.pid)
    _wait_answering(mesh.workloads["a-1"])
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=20) == 0
    assert (
        not Path(f"/proc/{envoy_pid}").exists()
        or "Z" in Path(f"/proc/{envoy_pid}/stat").read_text().split()[2]
    )


def test_envoy_killed_exits_128_plus_signal(mesh: Mesh) -> None:
    sidecar = mesh.start_sidecar("a-1")
    os.kill(_envoy_child(sidecar.pid), signal.SIGKILL)
    assert sidecar.wait(timeout=20) == 128 + signal.SIGKILL


def test_bootstrap_names_the_node_and_the_control_plane(tmp_path: Path) -> None:
    params = BootstrapParams(
        ProxyId("a-1", "default"), "a", "127.0.0.1", 15010, "/tmp/s/admin.sock", "/tmp/s/sds.sock"
    )
    config = json.loads(write_bootstrap(params, tmp_path).read_text())
    assert config["node"]["id"] == "sidecar~a-1~default"
    # Admin on a private Unix socket, named to the control plane in the node metadata.
    assert config["admin"]["address"] == {"pipe": {"path": "/tmp/s/admin.sock", "mode": 0o600}}
    assert config["node"]["metadata"] == {"sidemesh.io/admin-socket": "/tmp/s/admin.sock"}
    assert config["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"


def test_envoy_bin_must_be_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVOY_BIN", str(tmp_path / "missing"))
    with pytest.raises(EnvoyNotFound, match="is not an executable file"):
        find_envoy()
    monkeypatch.delenv("ENVOY_BIN")
    assert find_envoy().is_file()


def test_envoy_does_not_outlive_its_agent(mesh: Mesh) -> None:
    sidecar = mesh.start_sidecar("a-1")
    envoy_pid = _envoy_child(sidecar.pid)
    sidecar.kill()  # SIGKILL: the agent cannot forward anything
    sidecar.wait(timeout=20)
    deadline = time.monotonic() + 20
    while Path(f"/proc/{envoy_pid}").exists():
        stat = Path(f"/proc/{envoy_pid}/stat").read_text().split()
        if stat[2] == "Z":
            break
        assert time.monotonic() < deadline, "Envoy kept running after its agent died"
        time.sleep(0.05)


def test_ready_says_live_once_envoy_has_its_config(mesh: Mesh) -> None:
    """``sidemesh ready``, the injected sidecar's startup probe, against a real one."""
    mesh.start_sidecar("a-1")
    mesh.wait_synced(["a-1"])
    deadline = time.monotonic() + 20
    while True:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "sidemesh",
                "ready",
                "--socket-dir",
                str(mesh.workloads["a-1"].socket_dir),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode == 0:
            break
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.2)
    assert done.stdout.strip() == "LIVE"
