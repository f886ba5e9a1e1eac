"""``sidemesh join``: one agent process for every workload of a host (real etcd, a real
control plane, real Envoys). Each workload keeps its own identity, certificate and
private socket directory; the agent registers them all, restarts an Envoy that dies
without touching the others, and a clean stop deregisters every one at once."""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.test_registration import Registry, _call, registry
from tests.helpers.etcd import etcd_missing
from tests.helpers.net import admin_get, backend, free_port
from tests.helpers.processes import descendants

pytestmark = pytest.mark.skipif(etcd_missing() is not None, reason=str(etcd_missing()))

WORKLOADS = ("a-1", "b-1", "b-2")
__all__ = ["registry"]  # the fixture


def _envoys(pid: int) -> dict[int, str]:
    """The join process's descendants, by pid, with their command line."""
    out = {}
    for child in descendants(pid):
        try:
            out[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return out


def _envoy_of(pid: int, workload: str) -> int | None:
    return next((p for p, cmd in _envoys(pid).items() if f"/{workload}/" in cmd), None)


def _live(socket: Path) -> bool:
    try:
        return admin_get(socket, "/ready").text.strip() == "LIVE"
    except (OSError, httpx.HTTPError):
        return False


def test_one_agent_runs_every_workload_of_a_host_each_with_its_own_identity(
    registry: Registry, tmp_path: Path
) -> None:
    ports = {name: (free_port(), free_port(), free_port()) for name in WORKLOADS}
    root = tmp_path / "run"
    # The host shares nothing with the control plane's directory: its tokens are made
    # by `sidemesh token create` and copied, with the mesh root, to its own.
    tokens = tmp_path / "host-tokens"
    tokens.mkdir(mode=0o700)
    for name in WORKLOADS:
        made = registry.run(
            "token", "create", "--workload", name, "--state-dir", str(registry.state_dir),
            "--out", str(tokens / f"{name}.default.token"),
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
    bundle = tmp_path / "root-cert.pem"
    bundle.write_bytes((registry.state_dir / "ca" / "root-cert.pem").read_bytes())
    host = {
        "controlPlane": f"127.0.0.1:{registry.xds}",
        "caAddress": f"127.0.0.1:{registry.ca}",
        "tokenDir": str(tokens),
        "caBundle": str(bundle),
        "etcd": registry.etcd.endpoints,
        "leaseTtl": 3,
        "socketRoot": str(root),
        "workloads": [
            {"name": name, "service": name[0], "address": "127.0.0.1", "port": port,
             "appPort": app, "outboundPort": outbound}
            for name, (port, app, outbound) in ports.items()
        ],
    }  # fmt: skip
    (tmp_path / "host.yaml").write_text(yaml.safe_dump(host))
    with backend("b-1", ports["b-1"][1]), backend("b-2", ports["b-2"][1]):
        agent = registry.start(
            [sys.executable, "-m", "sidemesh", "join", "-f", str(tmp_path / "host.yaml")], "join"
        )
        registry.until(lambda: all(_live(root / name / "admin.sock") for name in WORKLOADS))
        assert registry.workloads() == set(WORKLOADS)
        # One Python process: everything under it is an Envoy, one per workload.
        children = _envoys(agent.pid)
        assert len(children) == 3 and all("envoy" in cmd for cmd in children.values()), children
        # Each workload's sockets are its own, in a private directory.
        for name in WORKLOADS:
            directory = root / name
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
            certs = json.loads(admin_get(directory / "admin.sock", "/certs").text)
            sans = certs["certificates"][0]["cert_chain"][0]["subject_alt_names"]
            assert sans[0]["uri"] == f"spiffe://example.org/ns/default/sa/{name[0]}"
        seen: set[str] = set()
        registry.until(
            lambda: seen.add(_call(ports["a-1"][2]).json()["workload"]) or seen == {"b-1", "b-2"}
        )
        # b-2's Envoy dies: the agent starts it again; the others are not touched.
        others = {name: _envoy_of(agent.pid, name) for name in ("a-1", "b-1")}
        dead = _envoy_of(agent.pid, "b-2")
        assert dead is not None
        os.kill(dead, signal.SIGKILL)
        registry.until(lambda: _envoy_of(agent.pid, "b-2") not in (None, dead))
        registry.until(lambda: _live(root / "b-2" / "admin.sock"))
        assert {name: _envoy_of(agent.pid, name) for name in ("a-1", "b-1")} == others
        # A clean stop drains and deregisters every workload at once.
        agent.send_signal(signal.SIGTERM)
        left = registry.until(lambda: registry.workloads() == set(), timeout=10)
        assert left < 3, "deregistered before the leases ran out"
        assert agent.wait(15) == 0
        assert not any((root / name).exists() for name in WORKLOADS)
