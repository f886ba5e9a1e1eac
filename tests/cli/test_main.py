"""The ``sidemesh`` command as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _sidemesh(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidemesh", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["controlplane"],
        ["sidecar"],
        ["proxies"],
        ["check"],
        ["explain"],
        ["stat"],
        ["top"],
        ["traces"],
        ["trace"],
        ["inject"],
        ["ready"],
        ["redirect"],
    ],
)
def test_help_everywhere(command: list[str]) -> None:
    result = _sidemesh(*command, "--help")
    assert result.returncode == 0
    assert "Usage: sidemesh" in result.stdout


def test_bad_mesh_yaml_at_start_exits_2_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "mesh.yaml"
    bad.write_text(
        "services:\n"
        "  - {name: a, ports: [{port: 80}]}\n"
        "  - {name: b, ports: [{port: 80}]}\n"
        "  - {name: c, ports: [{port: 80, protocol: htp}]}\n"
    )
    result = _sidemesh("controlplane", "-f", str(bad), "--xds-port", "0", "--api-port", "0")
    assert result.returncode == 2
    assert (
        f"{bad}: services[2].ports[0].protocol: 'htp' is not one of http, http2, grpc, tcp"
        in result.stderr
    )


def test_missing_mesh_yaml_exits_2(tmp_path: Path) -> None:
    result = _sidemesh("controlplane", "-f", str(tmp_path / "nope.yaml"), "--api-port", "0")
    assert result.returncode == 2
    assert "cannot read file" in result.stderr


def test_sidecar_refuses_a_bad_control_plane_address() -> None:
    result = _sidemesh("sidecar", "-w", "a-1", "--control-plane", "nowhere")
    assert result.returncode == 2
    assert "--control-plane: 'nowhere' is not HOST:PORT" in result.stderr


def test_proxies_without_a_control_plane_says_so() -> None:
    result = _sidemesh("proxies", "--api", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert "cannot read /v1/proxies from the control plane at http://127.0.0.1:9" in result.stderr


def test_sidecar_never_takes_over_a_directory_of_the_operators_as_its_socket_dir(
    tmp_path: Path,
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = _sidemesh("sidecar", "-w", "a-1", "--socket-dir", str(tmp_path))
    assert result.returncode == 2
    assert f"--socket-dir: {tmp_path} exists and" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_registered_workload_carries_the_services_its_app_calls() -> None:
    from sidemesh.cli.main import _registration_entry

    entry = _registration_entry(
        "a-1", "a", "10.0.0.5", 8080, 18080, 15001, ["zone=z1"], None, ["b", "c.other"]
    )
    assert entry["calls"] == ["b", "c.other"]
    assert "calls" not in _registration_entry("a-1", "a", "10.0.0.5", 8080, None, 15001, None, None)
