"""On-demand benchmark: one real sidecar in a mesh of 1,000 services (2 workloads
each) whose app calls 5 of them, sent the whole mesh against holding what it uses,
side by side.

For each case a control plane serves the mesh (``--no-on-demand`` for the whole mesh),
one sidecar starts (its Envoy with one worker) and becomes LIVE; its app then calls
each of the 5 services for the first time and 20 times more. Reported: the first
call's latency against the median of the later ones (on demand, the first waits for
the service to be looked up), and, once settled, the resident memory (RSS) of the
Envoy and of its agent, and the clusters the Envoy holds. The 10 called workloads are
one small HTTP server on 127.0.0.1 ports; mTLS is off (the apps are not meshed), which
changes neither what a sidecar holds nor how it learns it.

Ends with one line:
  on-demand: 1000 services, Envoy RSS 65.8 MB on demand vs 134.1 MB whole mesh (target <= 40 MB); first call +5.3 ms at worst of 5 (target < 50 ms)

Usage: python -m bench.on_demand [--services 1000]
"""

from __future__ import annotations

import argparse
import statistics
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

from bench.footprint import _descendants, _is_envoy, _live, _pss_kb

TARGET_RSS_MB = 40.0
TARGET_FIRST_MS = 50.0
CALLED = 5
BASE_PORT = 31000
XDS, API, CA = 25110, 25114, 25112
SETTLE_S = 3.0

SERVER = """
import http.server, socketserver, sys, threading
class Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\\n"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
for port in map(int, sys.argv[1:]):
    threading.Thread(target=Server(("127.0.0.1", port), Quiet).serve_forever).start()
"""


def _mesh(services: int) -> str:
    workloads: list[dict[str, object]] = [
        {
            "name": "caller",
            "service": "caller",
            "port": BASE_PORT,
            "appPort": BASE_PORT + 1,
            "sidecar": {"outboundPort": BASE_PORT + 2},
        }
    ]
    for i in range(services):
        for replica in range(2):
            if i < CALLED:
                # Its endpoint is the test server's port (no sidecar runs for it); its
                # other ports are never used but must not clash.
                port = BASE_PORT + 10 + 2 * i + replica
                workload = {
                    "address": "127.0.0.1",
                    "port": port,
                    "appPort": port + 5000,
                    "sidecar": {"outboundPort": port + 10000},
                }
            else:
                # Never called: an address of its own that nothing listens on.
                n = 2 * i + replica + 1
                workload = {"address": f"127.1.{n >> 8}.{n & 255}", "port": 8080, "appPort": 8081}
            workloads.append({"name": f"s{i}-{replica}", "service": f"s{i}", **workload})
    return yaml.safe_dump(
        {
            "mesh": {"mtls": "DISABLE"},
            "services": [{"name": "caller", "ports": [{"port": 8080}]}]
            + [{"name": f"s{i}", "ports": [{"port": 8080}]} for i in range(services)],
            "workloads": workloads,
        }
    )


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@contextmanager
def _started(args: list[str], **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(args, **kwargs)  # type: ignore[call-overload]
    try:
        yield process
    finally:
        process.terminate()
        process.wait(30)


def _case(directory: Path, services: int, on_demand: bool, console: Console) -> dict[str, float]:
    directory.mkdir()
    (directory / "mesh.yaml").write_text(_mesh(services))
    control_plane = [
        sys.executable, "-m", "sidemesh", "controlplane", "-f", str(directory / "mesh.yaml"),
        "--state-dir", str(directory / "state"), "--xds-port", str(XDS), "--api-port", str(API),
        "--ca-port", str(CA), "--telemetry-interval", "0", "--log-level", "warning",
        "--on-demand" if on_demand else "--no-on-demand",
    ]  # fmt: skip
    socket_dir = directory / "s"
    sidecar = [
        sys.executable, "-m", "sidemesh", "sidecar", "--workload", "caller", "--service",
        "caller", "--control-plane", f"127.0.0.1:{XDS}", "--ca-address", f"127.0.0.1:{CA}",
        "--state-dir", str(directory / "state"), "--socket-dir", str(socket_dir),
        "--concurrency", "1", "--drain-seconds", "0", "--log-level", "warning",
    ]  # fmt: skip
    with _started(control_plane) as cp:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{API}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the control plane did not start")
            time.sleep(0.2)
        with _started(sidecar) as agent:
            socket = socket_dir / "admin.sock"
            with console.status(f"{'on demand' if on_demand else 'whole mesh'}: sidecar starting"):
                deadline = time.monotonic() + 180
                while _live([socket]) < 1:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the sidecar's Envoy never became LIVE")
                    time.sleep(0.5)
            first, later = [], []
            with httpx.Client(proxy=f"http://127.0.0.1:{BASE_PORT + 2}", timeout=10) as client:
                for i in range(CALLED):
                    started = time.perf_counter()
                    reply = client.get(f"http://s{i}:8080/")
                    first.append((time.perf_counter() - started) * 1000)
                    if reply.status_code != 200:
                        raise RuntimeError(f"s{i}: {reply.status_code} {reply.text[:200]}")
                    for _ in range(20):
                        started = time.perf_counter()
                        client.get(f"http://s{i}:8080/").raise_for_status()
                        later.append((time.perf_counter() - started) * 1000)
            time.sleep(SETTLE_S)
            pids = [agent.pid, *_descendants(agent.pid)]
            envoy = sum(_rss_kb(p) for p in pids if _is_envoy(p)) / 1024
            envoy_pss = sum(_pss_kb(p) for p in pids if _is_envoy(p)) / 1024
            agent_mb = sum(_rss_kb(p) for p in pids if not _is_envoy(p)) / 1024
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket)), timeout=5) as c:
                clusters = {
                    line.split("::", 1)[0]
                    for line in c.get("http://envoy/clusters").text.splitlines()
                    if line.startswith("outbound|")
                }
        cp_mb = _rss_kb(cp.pid) / 1024
    return {
        "envoy_mb": envoy,
        "envoy_pss_mb": envoy_pss,
        "agent_mb": agent_mb,
        "control_plane_mb": cp_mb,
        "clusters": float(len(clusters)),
        "first_ms_max": max(first),
        "first_ms_median": statistics.median(first),
        "later_ms_median": statistics.median(later),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    args = parser.parse_args()
    console = Console()
    ports = [str(BASE_PORT + 10 + 2 * i + r) for i in range(CALLED) for r in range(2)]
    with (
        tempfile.TemporaryDirectory(prefix="sidemesh-ondemand-") as tmp,
        _started([sys.executable, "-c", SERVER, *ports]),
    ):
        whole = _case(Path(tmp) / "whole", args.services, False, console)
        demand = _case(Path(tmp) / "demand", args.services, True, console)
    table = Table(
        title=f"one sidecar, {args.services} services x 2 workloads, its app calls {CALLED}"
    )
    table.add_column("")
    table.add_column("whole mesh", justify="right")
    table.add_column("on demand", justify="right")
    rows = [
        ("Envoy RSS (MB)", "envoy_mb", "{:.1f}"),
        ("Envoy PSS (MB; its binary's pages shared)", "envoy_pss_mb", "{:.1f}"),
        ("agent RSS (MB)", "agent_mb", "{:.1f}"),
        ("control plane RSS (MB)", "control_plane_mb", "{:.1f}"),
        ("outbound clusters in Envoy", "clusters", "{:.0f}"),
        ("first call, median (ms)", "first_ms_median", "{:.1f}"),
        ("first call, slowest of 5 (ms)", "first_ms_max", "{:.1f}"),
        ("later calls, median (ms)", "later_ms_median", "{:.1f}"),
    ]
    for label, key, fmt in rows:
        table.add_row(label, fmt.format(whole[key]), fmt.format(demand[key]))
    console.print(table)
    added = demand["first_ms_max"] - demand["later_ms_median"]
    print(
        f"on-demand: {args.services} services, Envoy RSS {demand['envoy_mb']:.1f} MB on demand "
        f"vs {whole['envoy_mb']:.1f} MB whole mesh (target <= {TARGET_RSS_MB:.0f} MB); "
        f"first call +{added:.1f} ms at worst of {CALLED} (target < {TARGET_FIRST_MS:.0f} ms)"
    )


if __name__ == "__main__":
    main()
