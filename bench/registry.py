"""Registry benchmark: what etcd adds between a workload's registration change and the
mesh state the control plane publishes, side by side with mesh.yaml.

A mesh of N services with M workloads each is held two ways: (a) in a real etcd
(Debian's etcd-server, started here): the services as ``sidemesh apply`` writes them,
every workload as a registration; (b) in a mesh.yaml file. The control plane's own
source for each (``EtcdSource`` watching the prefix, ``FileSource`` polling the file)
feeds an ``Aggregator`` in this process. K changes are made one after another (one
workload's labels: a registration put, or the file rewritten); for each, the time
from the change to the aggregator publishing the state that has it. What follows the
publish (translation, the push, the proxies' ACKs) is the same for both sources and is
``bench.controlplane``'s to measure.

Ends with one line:
  registry: 1000 services x 10 workloads, change to state p99 etcd 0.84s file 1.20s (etcd adds -0.36s, target < 0.1s)

Usage: python -m bench.registry [--services 1000] [--workloads 10] [--changes 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from sidemesh.model import MeshState
from sidemesh.model.registry import Layout
from sidemesh.sources import Aggregator, FileSource
from sidemesh.sources.etcd import EtcdSource, etcd_client

TARGET_S = 0.1
ETCD_PORT = 23790
BATCH = 100
"""Registrations written per etcd transaction while filling it (etcd allows 128)."""


def _workload(i: int, j: int, version: str = "v1") -> dict[str, Any]:
    index = i * 1000 + j
    return {
        "name": f"s{i}-{j}",
        "service": f"s{i}",
        "address": f"10.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}",
        "port": 8080,
        "appPort": 18080,
        "labels": {"version": version},
    }


def _services(services: int) -> list[dict[str, Any]]:
    return [{"name": f"s{i}", "ports": [{"port": 8080}]} for i in range(services)]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Published:
    """Records when the aggregator publishes a state in which a workload has a label."""

    def __init__(self) -> None:
        self.state: MeshState | None = None
        self.changed = asyncio.Event()

    def __call__(self, state: MeshState) -> None:
        self.state = state
        self.changed.set()

    async def until(self, name: str, version: str, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state
            workload = state.workload(name, "default") if state is not None else None
            if workload is not None and workload.labels.get("version") == version:
                return time.monotonic()
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))


async def measure_etcd(services: int, workloads: int, changes: int, directory: Path) -> list[float]:
    etcd = subprocess.Popen(
        [
            "etcd", "--data-dir", str(directory / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{ETCD_PORT}",
            "--advertise-client-urls", f"http://127.0.0.1:{ETCD_PORT}",
            "--listen-peer-urls", f"http://127.0.0.1:{ETCD_PORT + 1}",
            "--quota-backend-bytes", str(2 * 1024**3),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{ETCD_PORT}"
    layout = Layout()
    client = etcd_client(endpoint)
    try:
        for _ in range(100):
            try:
                await client.status()
                break
            except Exception:
                await asyncio.sleep(0.1)
        await client.put(layout.mesh, json.dumps({"services": _services(services)}).encode())
        entries = [(i, j) for i in range(services) for j in range(workloads)]
        for start in range(0, len(entries), BATCH):
            ops = [
                client.transactions.put(
                    layout.registration("default", f"s{i}-{j}"),
                    json.dumps(_workload(i, j)).encode(),
                )
                for i, j in entries[start : start + BATCH]
            ]
            await client.transaction(compare=[], success=ops, failure=[])
        published = Published()
        source = EtcdSource(etcd_client(endpoint), Aggregator([published]).feed("etcd"))
        await source.load_initial()
        watching = asyncio.create_task(source.watch())
        latencies = []
        try:
            for k in range(changes):
                i, j = k % services, k % workloads
                version = f"v{k + 2}"
                t0 = time.monotonic()
                await client.put(
                    layout.registration("default", f"s{i}-{j}"),
                    json.dumps(_workload(i, j, version)).encode(),
                )
                latencies.append(await published.until(f"s{i}-{j}", version) - t0)
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            await source.client.close()
        return latencies
    finally:
        await client.close()
        etcd.terminate()
        etcd.wait(30)


async def measure_file(services: int, workloads: int, changes: int, directory: Path) -> list[float]:
    path = directory / "mesh.yaml"

    def write(changed: tuple[int, int, str] | None) -> None:
        listed = []
        for i in range(services):
            for j in range(workloads):
                version = changed[2] if changed is not None and changed[:2] == (i, j) else "v1"
                listed.append(_workload(i, j, version))
        text = yaml.safe_dump({"services": _services(services), "workloads": listed})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)  # as an editor saves: the watcher never sees half a file

    write(None)
    published = Published()
    source = FileSource(path, Aggregator([published]).feed(str(path)))
    source.load()
    watching = asyncio.create_task(source.watch())
    latencies = []
    try:
        for k in range(changes):
            i, j = k % services, k % workloads
            version = f"v{k + 2}"
            t0 = time.monotonic()
            await asyncio.to_thread(write, (i, j, version))
            latencies.append(await published.until(f"s{i}-{j}", version) - t0)
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--workloads", type=int, default=10)
    parser.add_argument("--changes", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("etcd") is None:
        raise SystemExit("needs etcd (Debian etcd-server: make test-deps installs it)")
    console = Console()
    with tempfile.TemporaryDirectory(prefix="sidemesh-registry-") as tmp:
        with console.status("etcd: filling and changing registrations"):
            etcd = asyncio.run(measure_etcd(args.services, args.workloads, args.changes, Path(tmp)))
        with console.status("file: writing and changing mesh.yaml"):
            file = asyncio.run(measure_file(args.services, args.workloads, args.changes, Path(tmp)))
    table = Table(
        title=f"change to published state, {args.services} services x {args.workloads} workloads"
    )
    for column in ("source", "p50", "p99", "max"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for name, values in (("etcd (registration put)", etcd), ("mesh.yaml (file rewritten)", file)):
        table.add_row(
            name,
            f"{statistics.median(values):.3f}s",
            f"{_percentile(values, 0.99):.3f}s",
            f"{max(values):.3f}s",
        )
    console.print(table)
    added = _percentile(etcd, 0.99) - _percentile(file, 0.99)
    verdict = "met" if added < TARGET_S else "MISSED"
    console.print(
        f"registry: {args.services} services x {args.workloads} workloads, change to state p99 "
        f"etcd {_percentile(etcd, 0.99):.2f}s file {_percentile(file, 0.99):.2f}s "
        f"(etcd adds {added:+.2f}s, target < {TARGET_S}s, {verdict})"
    )


if __name__ == "__main__":
    main()
