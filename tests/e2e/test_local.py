"""``sidemesh up`` as a user runs it: real processes, real sidecars, real mTLS."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.net import free_port
from tests.helpers.processes import alive, descendants

ROOT = Path(__file__).resolve().parents[2]
BOOKINFO = ROOT / "examples" / "bookinfo" / "mesh.yaml"
APPS = ROOT / "tests" / "helpers" / "apps"


@dataclass
class Up:
    runtime_dir: Path
    api: str
    gateway_port: int
    args: list[str]

    def sidemesh(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sidemesh", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "COLUMNS": "150", "SIDEMESH_API": self.api},
            cwd=ROOT,
        )

    def workloads(self) -> dict[str, dict]:
        data = httpx.get(f"{self.api}/v1/local/workloads", timeout=5).json()["workloads"]
        return {w["name"]: w for w in data}

    def admin_socket(self, name: str, namespace: str = "default") -> str:
        """Where the Envoy of workload or gateway ``name`` has its admin, as it told the
        control plane when it connected."""
        proxies = httpx.get(f"{self.api}/v1/proxies", timeout=5).json()["proxies"]
        node = f"sidecar~{name}~{namespace}"
        return next(p["adminSocket"] for p in proxies if p["node"] == node)

    def pid(self) -> int:
        return int((self.runtime_dir / "up.pid").read_text().split()[0])


def _up_args(runtime_dir: Path, mesh_file: Path) -> tuple[list[str], str]:
    api_port = free_port()
    args = [
        "up", "-f", str(mesh_file), "--runtime-dir", str(runtime_dir),
        "--xds-port", str(free_port()), "--api-port", str(api_port),
        "--ca-port", str(free_port()),
    ]  # fmt: skip
    return args, f"http://127.0.0.1:{api_port}"


@contextmanager
def running_up(runtime_dir: Path, mesh_file: Path, gateway_port: int = 0) -> Iterator[Up]:
    """``sidemesh up -d`` of ``mesh_file``, brought down with ``sidemesh down`` after."""
    args, api = _up_args(runtime_dir, mesh_file)
    up = Up(runtime_dir, api, gateway_port, args)
    started = up.sidemesh(*args, "-d")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield up
    finally:
        up.sidemesh("down", "--runtime-dir", str(up.runtime_dir))


@pytest.fixture
def bookinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Up]:
    gateway_port = free_port()
    monkeypatch.setenv("SIDEMESH_DEMO_PORT", str(gateway_port))
    args, api = _up_args(tmp_path / "run", BOOKINFO)
    up = Up(tmp_path / "run", api, gateway_port, args)
    started = up.sidemesh(*args, "-d")
    assert started.returncode == 0, started.stdout + started.stderr
    assert "sidemesh is up." in started.stdout
    family = descendants(up.pid()) | {up.pid()}
    try:
        yield up
    finally:
        stopped = up.sidemesh("down", "--runtime-dir", str(up.runtime_dir))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        time.sleep(0.5)
        left = [pid for pid in family if alive(pid)]
        assert left == [], f"processes left behind: {left}"


def _page(up: Up) -> str:
    reply = httpx.get(f"http://127.0.0.1:{up.gateway_port}/productpage", timeout=10)
    assert reply.status_code == 200
    return reply.text


def test_killed_workload_is_restarted_and_the_page_keeps_answering(bookinfo: Up) -> None:
    assert "reviews served by reviews-v" in _page(bookinfo)
    victim = bookinfo.workloads()["reviews-v2-1"]["app"]
    os.kill(victim["pid"], 9)
    deadline = time.monotonic() + 30
    answered = 0
    while True:
        page = _page(bookinfo)
        assert "product reviews are currently unavailable" not in page
        answered += 1
        app = bookinfo.workloads()["reviews-v2-1"]["app"]
        if app["restarts"] == 1 and app["state"] == "running":
            break
        assert time.monotonic() < deadline, app
        time.sleep(0.05)
    assert app["pid"] != victim["pid"] and app["lastExit"] == -9
    status = bookinfo.sidemesh("status", "--api", bookinfo.api)
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if "reviews-v2-1" in line)
    assert "running" in row and "│ 1 " in row
    print(f"page answered {answered} times while reviews-v2-1 restarted")


def test_status_logs_and_proxy_config(bookinfo: Up) -> None:
    _page(bookinfo)
    status = bookinfo.sidemesh("status", "-o", "json", "--api", bookinfo.api)
    rows = {w["name"]: w for w in __import__("json").loads(status.stdout)["workloads"]}
    assert set(rows) >= {"productpage-v1", "reviews-v1-1", "reviews-v3-2", "ingress"}
    assert all(r["synced"] and r["ready"] for r in rows.values())
    assert rows["ratings-v1"]["identity"] == "spiffe://bookinfo.local/ns/default/sa/ratings"

    logs = bookinfo.sidemesh("logs", "ratings-v1", "--runtime-dir", str(bookinfo.runtime_dir))
    assert "ratings-v1 listening on 127.0.0.1:" in logs.stdout
    missing = bookinfo.sidemesh("logs", "nope", "--runtime-dir", str(bookinfo.runtime_dir))
    assert missing.returncode == 1 and "ratings-v1" in missing.stderr

    config = bookinfo.sidemesh("proxy-config", "productpage-v1", "clusters", "--api", bookinfo.api)
    assert config.returncode == 0, config.stderr
    assert "outbound|9080||reviews.default" in config.stdout
    assert "differs" not in config.stdout and "missing" not in config.stdout
    # It holds what productpage calls (learned at the page's first load), not the mesh.
    assert config.stdout.count("same") >= 3
    assert "ratings.default" not in config.stdout
    assert "reviews.default" in config.stdout and "on demand" in config.stdout
    secrets = bookinfo.sidemesh("proxy-config", "productpage-v1", "secrets", "--api", bookinfo.api)
    assert "spiffe://bookinfo.local/ns/default/sa/productpage" in secrets.stdout


def test_up_refuses_to_run_twice(bookinfo: Up) -> None:
    again = bookinfo.sidemesh(*bookinfo.args)
    assert again.returncode == 1
    assert "a mesh already runs from" in again.stdout


@pytest.mark.parametrize(
    ("mesh", "expected"),
    [
        (
            """
            services: [{name: a, ports: [{port: 80}]}]
            workloads:
              - {name: a-1, service: a, command: "python -c pass", upstreams: [{service: dbb}]}
            """,
            "workloads[0].upstreams[0].service: 'dbb' is not a service in namespace 'default'",
        ),
        (
            """
            services: [{name: a, ports: [{port: 80}]}]
            workloads:
              - {name: a-1, service: a, command: "python -c pass", port: 31000, appPort: 31001}
              - {name: a-2, service: a, command: "python -c pass", port: 31000, appPort: 31002}
            """,
            "workloads[1].port: port 31000 on 127.0.0.1 is already used by workloads[0].port",
        ),
        (
            """
            services: [{name: a, ports: [{port: 80}]}]
            workloads: [{name: a-1, service: a}]
            """,
            "workloads[0].command: required field is missing (sidemesh up runs it)",
        ),
        (
            """
            services: [{name: a, ports: [{port: 80}]}]
            workloads: [{name: a-1, service: a, command: "app --listen {prot}"}]
            """,
            "workloads[0].command: unknown placeholder {prot}",
        ),
    ],
)
def test_bad_mesh_yaml_starts_nothing(tmp_path: Path, mesh: str, expected: str) -> None:
    mesh_file = tmp_path / "mesh.yaml"
    mesh_file.write_text(textwrap.dedent(mesh))
    args, api = _up_args(tmp_path / "run", mesh_file)
    result = Up(tmp_path / "run", api, 0, args).sidemesh(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{mesh_file}: {expected}" in result.stderr, result.stderr
    assert "nothing was started." in result.stderr
    assert not (tmp_path / "run" / "logs").exists()


def test_tcp_upstream_through_the_mesh(tmp_path: Path) -> None:
    mesh_file = tmp_path / "mesh.yaml"
    mesh_file.write_text(
        textwrap.dedent(
            f"""
            services:
              - {{name: db, ports: [{{port: 5432, protocol: tcp}}]}}
              - {{name: web, ports: [{{port: 8080}}]}}
            workloads:
              - {{name: db-1, service: db, command: "python {APPS / "tcp_echo.py"}"}}
              - name: web-1
                service: web
                command: ["python", "{APPS / "tcp_caller.py"}"]
                env: {{TARGET: db}}
                upstreams: [{{service: db}}]
            gateways:
              - {{name: edge, port: {free_port()}, routes: [{{service: web}}]}}
            """
        )
    )
    args, api = _up_args(tmp_path / "run", mesh_file)
    up = Up(tmp_path / "run", api, 0, args)
    started = up.sidemesh(*args, "-d")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        state = httpx.get(f"{api}/v1/state", timeout=5).json()
        port = state["gateways"][0]["port"]
        reply = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert reply.text == "db-1: hello\n"
    finally:
        up.sidemesh("down", "--runtime-dir", str(up.runtime_dir))


def test_edit_while_up_starts_and_stops_workloads(tmp_path: Path) -> None:
    echo = ROOT / "examples" / "echo_app.py"
    gateway = free_port()

    def mesh(replicas: int) -> str:
        return textwrap.dedent(
            f"""
            services: [{{name: web, ports: [{{port: 8080}}]}}]
            workloads:
              - name: web
                service: web
                replicas: {replicas}
                command: python {echo} {{workload}} {{port}}
            gateways: [{{name: edge, port: {gateway}, routes: [{{service: web}}]}}]
            """
        )

    mesh_file = tmp_path / "mesh.yaml"
    mesh_file.write_text(mesh(1))
    args, api = _up_args(tmp_path / "run", mesh_file)
    up = Up(tmp_path / "run", api, gateway, args)
    started = up.sidemesh(*args, "-d")
    try:
        assert started.returncode == 0, started.stdout + started.stderr

        def answers(count: int = 30) -> set[str]:
            seen = set()
            for _ in range(count):
                reply = httpx.get(f"http://127.0.0.1:{gateway}/", timeout=10)
                # While replicas start, a request can find none ready yet (no health
                # checks in this mesh yet): that is a 503, not an answer.
                seen.add(reply.json()["workload"] if reply.status_code == 200 else "")
            return seen

        assert answers() == {"web"}
        mesh_file.write_text(mesh(3))  # replicas > 1: named web-1, web-2, web-3
        deadline = time.monotonic() + 60
        while answers() - {""} != {"web-1", "web-2", "web-3"}:
            assert time.monotonic() < deadline, up.workloads()
            time.sleep(0.2)
        # The removed replica drains for a couple of seconds before it is gone.
        while set(up.workloads()) != {"web-1", "web-2", "web-3", "edge"}:
            assert time.monotonic() < deadline + 10, up.workloads()
            time.sleep(0.2)
        assert answers() == {"web-1", "web-2", "web-3"}  # once all are up, no errors
    finally:
        up.sidemesh("down", "--runtime-dir", str(up.runtime_dir))
