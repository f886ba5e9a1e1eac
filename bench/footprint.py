"""Footprint benchmark: the mesh's memory per workload on a host, one agent per
workload (``sidemesh sidecar`` each) against one agent for the host (``sidemesh
join``), side by side.

A control plane serves a mesh of N workloads on this machine; for each case every
workload's Envoy (one worker thread) and its agent(s) are started, the bench waits for
every Envoy to be LIVE (its config and certificate in), lets them settle, and sums the
proportional set size (PSS, ``/proc/<pid>/smaps_rollup``: shared pages split between
the processes sharing them) of the Envoys and of the agents. No app runs: the
overhead is the mesh's own.

Ends with one line:
  footprint: 60 workloads, 24.1 MB per workload with one agent per host (target <= 25 MB), 71.0 MB with one per workload

Usage: python -m bench.footprint [--workloads 60]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml
from rich.console import Console
from rich.table import Table

TARGET_MB = 25.0
BASE_PORT = 30000
SETTLE_S = 5.0


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            out += [int(child), *_descendants(int(child))]
    return out


def _is_envoy(pid: int) -> bool:
    try:
        return b"envoy" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False


def _mesh(count: int) -> str:
    workloads = [
        {
            "name": f"w-{i}",
            "service": "w",
            "port": BASE_PORT + 3 * i,
            "appPort": BASE_PORT + 3 * i + 1,
            "sidecar": {"outboundPort": BASE_PORT + 3 * i + 2},
        }
        for i in range(count)
    ]
    return yaml.safe_dump(
        {"services": [{"name": "w", "ports": [{"port": 8080}]}], "workloads": workloads}
    )


@contextmanager
def _control_plane(directory: Path, count: int) -> Iterator[tuple[int, int]]:
    (directory / "mesh.yaml").write_text(_mesh(count))
    xds, api, ca = 25010, 25014, 25012
    process = subprocess.Popen(
        [
            sys.executable, "-m", "sidemesh", "controlplane", "-f", str(directory / "mesh.yaml"),
            "--state-dir", str(directory / "state"), "--xds-port", str(xds),
            "--api-port", str(api), "--ca-port", str(ca), "--telemetry-interval", "0",
            "--log-level", "warning",
        ],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{api}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield xds, ca
    finally:
        process.terminate()
        process.wait(30)


def _live(sockets: list[Path]) -> int:
    ready = 0
    for socket in sockets:
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), timeout=1) as c:
                ready += c.get("http://envoy/ready").text.strip() == "LIVE"
        except (httpx.HTTPError, OSError):
            pass
    return ready


def _measure(roots: list[int], sockets: list[Path], console: Console) -> tuple[float, float]:
    """(Envoys' PSS, agents' PSS) in MB, once every Envoy is LIVE and settled."""
    deadline = time.monotonic() + 300
    with console.status("waiting for every Envoy to be LIVE") as status:
        while (ready := _live(sockets)) < len(sockets):
            status.update(f"{ready}/{len(sockets)} Envoys LIVE")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {ready}/{len(sockets)} Envoys came up")
            time.sleep(1)
        time.sleep(SETTLE_S)
    envoys = agents = 0
    for root in roots:
        for pid in [root, *_descendants(root)]:
            if _is_envoy(pid):
                envoys += _pss_kb(pid)
            else:
                agents += _pss_kb(pid)
    return envoys / 1024, agents / 1024


def _per_workload_agents(
    directory: Path, count: int, xds: int, ca: int, console: Console
) -> tuple[float, float]:
    processes = []
    sockets = []
    try:
        for i in range(count):
            socket_dir = directory / "s" / f"w-{i}"
            sockets.append(socket_dir / "admin.sock")
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "sidemesh",
                        "sidecar",
                        "--workload",
                        f"w-{i}",
                        "--service",
                        "w",
                        "--control-plane",
                        f"127.0.0.1:{xds}",
                        "--ca-address",
                        f"127.0.0.1:{ca}",
                        "--state-dir",
                        str(directory / "state"),
                        "--socket-dir",
                        str(socket_dir),
                        "--concurrency",
                        "1",
                        "--drain-seconds",
                        "0",
                        "--log-level",
                        "warning",
                    ],
                )
            )
        return _measure([p.pid for p in processes], sockets, console)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)


def _host_agent(
    directory: Path, count: int, xds: int, ca: int, console: Console
) -> tuple[float, float]:
    root = directory / "h"
    host = {
        "controlPlane": f"127.0.0.1:{xds}",
        "caAddress": f"127.0.0.1:{ca}",
        "stateDir": str(directory / "state"),
        "socketRoot": str(root),
        "workloads": [
            {
                "name": f"w-{i}", "service": "w", "address": "127.0.0.1",
                "port": BASE_PORT + 3 * i, "appPort": BASE_PORT + 3 * i + 1,
                "outboundPort": BASE_PORT + 3 * i + 2,
            }
            for i in range(count)
        ],
    }  # fmt: skip
    (directory / "host.yaml").write_text(yaml.safe_dump(host))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sidemesh",
            "join",
            "-f",
            str(directory / "host.yaml"),
            "--log-level",
            "warning",
        ]
    )
    try:
        return _measure(
            [process.pid], [root / f"w-{i}" / "admin.sock" for i in range(count)], console
        )
    finally:
        process.terminate()
        process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=60)
    args = parser.parse_args()
    console = Console()
    count = args.workloads
    with tempfile.TemporaryDirectory(prefix="sidemesh-footprint-") as tmp:
        directory = Path(tmp)
        with _control_plane(directory, count) as (xds, ca):
            separate = _per_workload_agents(directory, count, xds, ca, console)
            shared = _host_agent(directory, count, xds, ca, console)
    table = Table(title=f"mesh overhead, {count} workloads, PSS in MB")
    for column in ("case", "Envoys", "agents", "total", "per workload"):
        table.add_column(column, justify="right" if column != "case" else "left")
    for name, (envoys, agents) in (
        ("one agent per workload (sidemesh sidecar)", separate),
        ("one agent per host (sidemesh join)", shared),
    ):
        total = envoys + agents
        table.add_row(
            name, f"{envoys:.0f}", f"{agents:.0f}", f"{total:.0f}", f"{total / count:.1f}"
        )
    console.print(table)
    per_host = sum(shared) / count
    per_workload = sum(separate) / count
    verdict = "met" if per_host <= TARGET_MB else "MISSED"
    console.print(
        f"footprint: {count} workloads, {per_host:.1f} MB per workload with one agent per host "
        f"(target <= {TARGET_MB:.0f} MB, {verdict}), {per_workload:.1f} MB with one per workload"
    )


if __name__ == "__main__":
    main()
