"""``sidemesh sidecar`` runs a real Envoy, forwards signals and exits as Envoy did."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sidemesh.agent.envoy_binary import find_envoy
from sidemesh.agent.sidecar import write_bootstrap
from sidemesh.envoy import ProxyId
from sidemesh.envoy.bootstrap import BootstrapParams
from sidemesh.errors import EnvoyNotFound
from tests.helpers.net import free_port, listening_addresses


def _start(tmp_path: Path, admin_port: int) -> subprocess.Popen[bytes]:
    # No control plane listens on the xDS port: Envoy starts anyway and keeps retrying.
    return subprocess.Popen(
        [
            sys.executable, "-m", "sidemesh", "sidecar", "-w", "a-1",
            "--control-plane", f"127.0.0.1:{free_port()}",
            "--admin-port", str(admin_port), "--workdir", str(tmp_path), "--log-level", "error",
        ]
    )  # fmt: skip


def _envoy_child(pid: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError("Envoy was not started")


def _wait_listening(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not listening_addresses(port):
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.05)


def test_sigterm_is_forwarded_and_envoys_status_returned(tmp_path: Path) -> None:
    admin = free_port()
    sidecar = _start(tmp_path, admin)
    envoy_pid = _envoy_child(sidecar.pid)
    _wait_listening(admin)
    assert listening_addresses(admin) == {"127.0.0.1"}
    sidecar.send_signal(signal.SIGTERM)
    assert sidecar.wait(timeout=20) == 0
    assert (
        not Path(f"/proc/{envoy_pid}").exists()
        or "Z" in Path(f"/proc/{envoy_pid}/stat").read_text().split()[2]
    )


def test_envoy_killed_exits_128_plus_signal(tmp_path: Path) -> None:
    sidecar = _start(tmp_path, free_port())
    os.kill(_envoy_child(sidecar.pid), signal.SIGKILL)
    assert sidecar.wait(timeout=20) == 128 + signal.SIGKILL


def test_bootstrap_names_the_node_and_the_control_plane(tmp_path: Path) -> None:
    params = BootstrapParams(ProxyId("a-1", "default"), "a", "127.0.0.1", 15010, 15000)
    config = json.loads(write_bootstrap(params, tmp_path).read_text())
    assert config["node"]["id"] == "sidecar~a-1~default"
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    assert config["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"


def test_envoy_bin_must_be_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVOY_BIN", str(tmp_path / "missing"))
    with pytest.raises(EnvoyNotFound, match="is not an executable file"):
        find_envoy()
    monkeypatch.delenv("ENVOY_BIN")
    assert find_envoy().is_file()


def test_envoy_does_not_outlive_its_agent(tmp_path: Path) -> None:
    sidecar = _start(tmp_path, free_port())
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
