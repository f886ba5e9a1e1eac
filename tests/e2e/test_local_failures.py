"""Local mode under the failures an operator causes: a mangled mesh.yaml, and every
kind of process SIGKILLed (an app, an Envoy, an agent, the control plane, ``up``
itself) under bounded load. Real processes, real Envoy sidecars, real mTLS."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from sidemesh.local.runfiles import RunFiles, read_json
from tests.e2e.test_local import ROOT, Up, running_up
from tests.helpers.net import admin_get, free_port
from tests.helpers.processes import alive, descendants
from tests.helpers.traffic import BackgroundLoad

ECHO = ROOT / "examples" / "echo_app.py"
LOAD_RPS = 50


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[Up, Path]]:
    """Two echo replicas behind a gateway, run by ``sidemesh up -d``."""
    yield from _web(tmp_path)


@pytest.fixture
def web_without_setpriv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Up, Path]]:
    """The same, on a machine without setpriv: children do not die with ``up``."""
    monkeypatch.setenv("PATH", str(ROOT / ".venv" / "bin"))
    monkeypatch.setenv("SIDEMESH_CERT_LIFETIME", "900")  # up honours it, as controlplane does
    yield from _web(tmp_path)


def _web(tmp_path: Path) -> Iterator[tuple[Up, Path]]:
    gateway = free_port()
    mesh_file = tmp_path / "mesh.yaml"
    mesh_file.write_text(
        textwrap.dedent(
            f"""
            services: [{{name: web, ports: [{{port: 8080}}]}}]
            workloads:
              - name: web
                service: web
                replicas: 2
                command: python {ECHO} {{workload}} {{port}}
            gateways: [{{name: edge, port: {gateway}, routes: [{{service: web}}]}}]
            """
        )
    )
    with running_up(tmp_path / "run", mesh_file, gateway) as up:
        yield up, mesh_file


def _wait(what: str, done: Callable[[], bool], timeout: float = 30.0) -> float:
    """Seconds until ``done()``; fails naming ``what`` after ``timeout``."""
    start = time.monotonic()
    while not done():
        assert time.monotonic() - start < timeout, f"not {what} after {timeout:.0f}s"
        time.sleep(0.05)
    return time.monotonic() - start


def _local(up: Up) -> dict:
    return httpx.get(f"{up.api}/v1/local/workloads", timeout=5).json()


def _restarted(up: Up, workload: str, process: str, old_pid: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            proc = up.workloads()[workload][process]
        except httpx.HTTPError:
            return False
        return bool(proc["state"] == "running" and proc["pid"] != old_pid)

    return check


def _envoy_of(agent_pid: int) -> int:
    envoys = [p for p in descendants(agent_pid) if "envoy" in Path(f"/proc/{p}/comm").read_text()]
    assert len(envoys) == 1, envoys
    return envoys[0]


def _ready(admin_socket: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return admin_get(admin_socket, "/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def test_killing_each_kind_of_process_under_load_recovers_and_down_leaves_nothing(
    web: tuple[Up, Path],
) -> None:
    up, mesh_file = web
    files = RunFiles(up.runtime_dir)
    temp_dir = Path(read_json(files.processes_file)["tempDir"])
    assert temp_dir.is_dir()
    admin = {name: up.admin_socket(name) for name in ("web-1", "web-2")}
    load = BackgroundLoad(f"http://127.0.0.1:{up.gateway_port}/", pause_s=1 / LOAD_RPS).start()
    family: set[int] = set()
    report: dict[str, object] = {}
    try:
        time.sleep(1)

        # An app: restarted; its sidecar answers 503 meanwhile, retried on the other replica.
        start = time.monotonic()
        app = up.workloads()["web-1"]["app"]["pid"]
        family |= descendants(up.pid()) | {up.pid()}
        os.kill(app, signal.SIGKILL)
        _wait("app restarted", _restarted(up, "web-1", "app", app))
        time.sleep(1)
        report["app"] = load.failures_since(start)

        # An Envoy: its agent exits with it and is restarted, with a new Envoy.
        start = time.monotonic()
        agent = up.workloads()["web-2"]["sidecar"]["pid"]
        os.kill(_envoy_of(agent), signal.SIGKILL)
        _wait("sidecar restarted", _restarted(up, "web-2", "sidecar", agent))
        _wait("Envoy ready", _ready(admin["web-2"]))
        time.sleep(1)
        report["envoy"] = load.failures_since(start)

        # An agent: its Envoy dies with it (parent-death signal), both come back.
        start = time.monotonic()
        agent = up.workloads()["web-1"]["sidecar"]["pid"]
        envoy = _envoy_of(agent)
        family |= descendants(up.pid())
        os.kill(agent, signal.SIGKILL)
        _wait("the orphaned Envoy gone", lambda: not alive(envoy), timeout=10)
        _wait("sidecar restarted", _restarted(up, "web-1", "sidecar", agent))
        _wait("Envoy ready", _ready(admin["web-1"]))
        time.sleep(1)
        report["agent"] = load.failures_since(start)

        # The control plane: back within a second (its spare takes over, imports done;
        # its API answering with the new pid is the measure); sidecars serve throughout.
        start = time.monotonic()
        control_plane = _local(up)["controlPlane"]["pid"]
        family |= descendants(up.pid())
        os.kill(control_plane, signal.SIGKILL)

        def control_plane_back() -> bool:
            try:
                return bool(_local(up)["controlPlane"]["pid"] != control_plane)
            except httpx.HTTPError:
                return False

        back = _wait("control plane restarted", control_plane_back)
        report["control plane back (s)"] = round(back, 2)
        assert back < 1.0, report
        status = up.sidemesh("status", "--api", up.api)
        assert "control plane: running" in status.stdout and "1 restarts" in status.stdout
        # The restarted control plane still refuses a mangled file, and nothing stops.
        mesh_text = mesh_file.read_text()
        mesh_file.write_text("")
        _wait(
            "the empty file refused",
            lambda: "is empty" in str(httpx.get(f"{up.api}/v1/state", timeout=5).json()["source"]),
        )
        time.sleep(0.5)
        assert set(up.workloads()) == {"web-1", "web-2", "edge"}
        mesh_file.write_text(mesh_text)
        report["control plane"] = load.failures_since(start)
        assert report["control plane"] == Counter(), report

        # ``up`` itself: every child dies with it.
        family |= descendants(up.pid()) | {up.pid()}
        os.kill(up.pid(), signal.SIGKILL)
        _wait("every process of the run gone", lambda: not any(alive(p) for p in family))
    finally:
        load.stop()
    down = up.sidemesh("down", "--runtime-dir", str(up.runtime_dir))
    assert down.returncode == 0, down.stdout + down.stderr
    assert "sidemesh is down." in down.stdout, down.stdout
    assert [p for p in family if alive(p)] == []
    assert not temp_dir.exists(), "the run's temp dir survived"
    assert not files.processes_file.exists() and not files.pid_file.exists()
    total = len(load.outcomes)
    print(f"requests: {total}; failures by phase: {report}")
    # Each kill is ridden out: an app's or a sidecar's by retries on the other
    # replica, the control plane's by sidecars keeping their config.
    assert all(c == Counter() for c in report.values() if isinstance(c, Counter)), report


def test_down_stops_what_a_killed_run_left_behind(
    web_without_setpriv: tuple[Up, Path],
) -> None:
    up, _ = web_without_setpriv
    files = RunFiles(up.runtime_dir)
    proxies = httpx.get(f"{up.api}/v1/proxies", timeout=5).json()["proxies"]
    assert all(0 < p["certificate"]["expiresInSeconds"] <= 900 for p in proxies), proxies
    temp_dir = Path(read_json(files.processes_file)["tempDir"])
    family = descendants(up.pid())
    records = read_json(files.processes_file)["processes"]
    assert {r["name"] for r in records} >= {
        "controlplane",
        "web-1",
        "web-1 sidecar",
        "edge sidecar",
    }
    os.kill(up.pid(), signal.SIGKILL)
    time.sleep(1)
    survivors = [p for p in family if alive(p)]
    assert survivors, "nothing survived: this test needs a run without parent-death signals"
    down = up.sidemesh("down", "--runtime-dir", str(up.runtime_dir))
    assert down.returncode == 0, down.stdout + down.stderr
    assert "processes a run left behind" in down.stdout, down.stdout
    assert [p for p in family if alive(p)] == []
    assert not temp_dir.exists()
    print(f"down stopped {len(survivors)} processes a killed run left: {down.stdout.strip()}")
