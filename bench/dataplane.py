"""Data plane benchmark: sidemesh's path against Envoy's own floor and direct traffic.

Cases, measured in one run with the same load tool, connections and duration:
  a  direct        wrk → nginx
  b  envoy         wrk → one Envoy (hand-written minimal static config) → nginx
  c  envoy-mtls    wrk → Envoy → mTLS → Envoy (hand-written minimal static config) → nginx
  d  sidemesh      wrk → sidecar a → mTLS → sidecar b → nginx, config from the control plane
  e  sidemesh+obs  d with tracing and access logs (not built in sidemesh yet: reported so)

nginx and every Envoy (one worker each) share CPU 0; wrk runs alone on CPU 1. Each
case runs --runs times (default 3) and the median is reported. Ends with one line:
  dataplane: mesh/floor rps=0.95 p99=1.04 mesh/direct rps=0.41 p99=2.30

Usage: python -m bench.dataplane [--duration 10] [--connections 32] [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from sidemesh.agent.envoy_binary import find_envoy
from sidemesh.identity import CertificateAuthority, SpiffeId
from sidemesh.identity.ca import write_private

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PROXY_CPU = "0"
LOAD_CPU = "1"
BODY = b"x" * 256


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float


@dataclass
class Case:
    key: str
    name: str
    url: str
    host: str = "backend"
    runs: list[Run] = field(default_factory=list)
    note: str = ""

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.runs) if self.runs else float("nan")

    @property
    def p50(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs) if self.runs else float("nan")

    @property
    def p99(self) -> float:
        return statistics.median(r.p99_ms for r in self.runs) if self.runs else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def need(tool: str, package: str) -> str:
    found = shutil.which(tool) or (
        f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None
    )
    if found is None:
        sys.exit(f"bench: {tool} is missing: apt-get install {package} (make bench does)")
    return found


def pinned(cpu: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv]


class Procs:
    """Processes of one bench run; all stopped at the end, whatever happens."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# --- the backend ---------------------------------------------------------------------
def start_nginx(procs: Procs, port: int) -> None:
    nginx = need("nginx", "nginx-light")
    root = procs.workdir / "nginx"
    (root / "html").mkdir(parents=True)
    # Run as root, nginx's worker drops to www-data, which must read the page.
    for path in (procs.workdir, root, root / "html"):
        path.chmod(0o755)
    (root / "html" / "index.html").write_bytes(BODY)
    (root / "html" / "index.html").chmod(0o644)
    conf = root / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {root}/tmp;
  proxy_temp_path {root}/tmp;
  fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp;
  scgi_temp_path {root}/tmp;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{ root {root}/html; index index.html; }}
  }}
}}
"""
    )
    procs.start("nginx", pinned(PROXY_CPU, [nginx, "-c", str(conf), "-p", str(root)]))


# --- hand-written Envoy configs (Envoy's own floor) ----------------------------------
def _cluster(name: str, port: int, tls: dict[str, Any] | None = None) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": "127.0.0.1", "port_value": port}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    if tls:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                **tls,
            },
        }
    return cluster


def _listener(port: int, cluster: str, tls: dict[str, Any] | None = None) -> dict[str, Any]:
    chain: dict[str, Any] = {
        "filters": [
            {
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "bench",
                    "route_config": {
                        "virtual_hosts": [
                            {
                                "name": "all",
                                "domains": ["*"],
                                "routes": [
                                    {"match": {"prefix": "/"}, "route": {"cluster": cluster}}
                                ],
                            }
                        ]
                    },
                    "http_filters": [
                        {
                            "name": "envoy.filters.http.router",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                            },
                        }
                    ],
                },
            }
        ]
    }
    if tls:
        chain["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": True,
                **tls,
            },
        }
    return {
        "name": "bench",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [chain],
    }


def start_static_envoy(
    procs: Procs, name: str, listener: dict[str, Any], cluster: dict[str, Any]
) -> None:
    config = {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": free_port()}}
        },
        "static_resources": {"listeners": [listener], "clusters": [cluster]},
    }
    path = procs.workdir / f"{name}.json"
    path.write_text(json.dumps(config))
    procs.start(
        name,
        pinned(
            PROXY_CPU,
            [
                str(find_envoy()),
                "-c",
                str(path),
                "-l",
                "error",
                "--concurrency",
                "1",
                "--disable-hot-restart",
            ],
        ),
    )


def mtls_files(workdir: Path) -> dict[str, Path]:
    ca = CertificateAuthority.load_or_create(workdir / "ca", "bench.local")
    out = {"ca": workdir / "ca" / "root-cert.pem"}
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    for who in ("client", "server"):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
        issued = ca.sign(csr, SpiffeId("bench.local", "default", who), dt.timedelta(hours=2))
        (workdir / f"{who}.pem").write_bytes(issued.chain_pem)
        write_private(
            workdir / f"{who}-key.pem",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        out[who] = workdir / f"{who}.pem"
        out[f"{who}-key"] = workdir / f"{who}-key.pem"
    return out


def _tls_context(files: dict[str, Path], who: str, peer: str) -> dict[str, Any]:
    return {
        "common_tls_context": {
            "tls_certificates": [
                {
                    "certificate_chain": {"filename": str(files[who])},
                    "private_key": {"filename": str(files[f"{who}-key"])},
                }
            ],
            "validation_context": {
                "trusted_ca": {"filename": str(files["ca"])},
                "match_typed_subject_alt_names": [
                    {
                        "san_type": "URI",
                        "matcher": {"exact": f"spiffe://bench.local/ns/default/sa/{peer}"},
                    }
                ],
            },
        }
    }


# --- sidemesh ------------------------------------------------------------------------
def start_sidemesh(procs: Procs, backend_port: int) -> tuple[int, int]:
    """Control plane + sidecars a and b; returns (a's outbound port, a's admin port)."""
    ports = {
        k: free_port()
        for k in (
            "xds",
            "api",
            "ca",
            "a_in",
            "a_app",
            "a_out",
            "a_admin",
            "b_in",
            "b_out",
            "b_admin",
        )
    }
    mesh = procs.workdir / "mesh.yaml"
    mesh.write_text(
        f"""
mesh: {{trustDomain: bench.local}}
services:
  - {{name: client, ports: [{{port: 8080}}]}}
  - {{name: backend, ports: [{{port: 80}}]}}
workloads:
  - {{name: a, service: client, port: {ports["a_in"]}, appPort: {ports["a_app"]},
      sidecar: {{outboundPort: {ports["a_out"]}, adminPort: {ports["a_admin"]}}}}}
  - {{name: b, service: backend, port: {ports["b_in"]}, appPort: {backend_port},
      sidecar: {{outboundPort: {ports["b_out"]}, adminPort: {ports["b_admin"]}}}}}
"""
    )
    state = procs.workdir / "state"
    sidemesh = [sys.executable, "-m", "sidemesh"]
    procs.start(
        "controlplane",
        [
            *sidemesh,
            "controlplane",
            "-f",
            str(mesh),
            "--xds-port",
            str(ports["xds"]),
            "--api-port",
            str(ports["api"]),
            "--ca-port",
            str(ports["ca"]),
            "--state-dir",
            str(state),
            "--log-level",
            "warning",
        ],
    )
    wait_http(f"http://127.0.0.1:{ports['api']}/healthz", "the control plane")
    for name in ("a", "b"):
        procs.start(
            f"sidecar-{name}",
            pinned(
                PROXY_CPU,
                [
                    *sidemesh,
                    "sidecar",
                    "-w",
                    name,
                    "--service",
                    "client" if name == "a" else "backend",
                    "--control-plane",
                    f"127.0.0.1:{ports['xds']}",
                    "--ca-address",
                    f"127.0.0.1:{ports['ca']}",
                    "--state-dir",
                    str(state),
                    "--admin-port",
                    str(ports[f"{name}_admin"]),
                    "--concurrency",
                    "1",
                    "--log-level",
                    "error",
                ],
            ),
        )
    return ports["a_out"], ports["a_admin"]


def wait_http(url: str, what: str, host: str | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = httpx.get(url, headers={"Host": host} if host else {}, timeout=2)
            if reply.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(f"bench: {what} did not answer {url} within {timeout:.0f}s")


# --- load ----------------------------------------------------------------------------
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(output: str) -> Run:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        assert m, f"no {p}% latency in wrk output:\n{output}"
        return float(m.group(1)) * _UNITS[m.group(2)]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} failed responses:\n{output}")
    return Run(rps=rps, p50_ms=pct("50"), p99_ms=pct("99"))


def wrk(url: str, host: str, duration: int, connections: int) -> Run:
    result = subprocess.run(
        pinned(
            LOAD_CPU,
            [
                need("wrk", "wrk"),
                "-t1",
                f"-c{connections}",
                f"-d{duration}s",
                "--latency",
                "-H",
                f"Host: {host}",
                url,
            ],
        ),
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    return parse_wrk(result.stdout)


def fixed_rate(url: str, host: str, rate: int, duration: int) -> dict[str, float] | None:
    """Latency at a constant request rate (h2load --rps), if h2load is installed."""
    h2load = shutil.which("h2load")
    if h2load is None:
        return None
    clients = 10
    result = subprocess.run(
        pinned(
            LOAD_CPU,
            [
                h2load,
                "--h1",
                "-c",
                str(clients),
                "--rps",
                str(rate // clients),
                "-n",
                str(rate * duration),
                "-H",
                f":authority: {host}",  # h2load sets Host from :authority
                url,
            ],
        ),
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", result.stdout)
    ok = re.search(r"status codes: (\d+) 2xx", result.stdout)
    if not m or not ok or int(ok.group(1)) != rate * duration:
        raise RuntimeError(f"fixed-rate run failed or saw errors:\n{result.stdout}")

    def ms(text: str) -> float:
        n = re.match(r"([\d.]+)(us|ms|s)", text)
        assert n
        return float(n.group(1)) * _UNITS[n.group(2)]

    return {"min_ms": ms(m.group(1)), "max_ms": ms(m.group(2)), "mean_ms": ms(m.group(3))}


@contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="sidemesh-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=int, default=1000, help="fixed-rate run, requests/s")
    args = parser.parse_args()
    console = Console()
    need("taskset", "util-linux")

    with workdir() as tmp, ExitStack() as stack:
        procs = Procs(tmp)
        stack.callback(procs.stop)
        backend = free_port()
        start_nginx(procs, backend)
        envoy_port, client_port, server_port = free_port(), free_port(), free_port()
        start_static_envoy(
            procs, "envoy", _listener(envoy_port, "backend"), _cluster("backend", backend)
        )
        files = mtls_files(tmp)
        start_static_envoy(
            procs,
            "envoy-server",
            _listener(server_port, "backend", _tls_context(files, "server", "client")),
            _cluster("backend", backend),
        )
        start_static_envoy(
            procs,
            "envoy-client",
            _listener(client_port, "server"),
            _cluster("server", server_port, _tls_context(files, "client", "server")),
        )
        mesh_port, _ = start_sidemesh(procs, backend)
        cases = [
            Case("a", "direct", f"http://127.0.0.1:{backend}/"),
            Case("b", "one Envoy, static", f"http://127.0.0.1:{envoy_port}/"),
            Case("c", "two Envoys, static mTLS", f"http://127.0.0.1:{client_port}/"),
            Case(
                "d", "sidemesh (2 sidecars, mTLS)", f"http://127.0.0.1:{mesh_port}/", host="backend"
            ),
            Case(
                "e",
                "sidemesh + tracing + access logs",
                "",
                note="not measured: sidemesh has no tracing or access-log settings yet",
            ),
        ]
        for case in cases:
            if case.url:
                wait_http(case.url, case.name, case.host)
        console.print(
            f"{args.runs} runs x {args.duration}s per case, wrk -t1 -c{args.connections} on CPU "
            f"{LOAD_CPU}; nginx and Envoys (1 worker each) on CPU {PROXY_CPU}; {len(BODY)}-byte body"
        )
        for run in range(args.runs):
            for case in cases:  # interleaved, so drift on a noisy machine hits every case
                if case.url:
                    case.runs.append(wrk(case.url, case.host, args.duration, args.connections))
            console.print(f"  run {run + 1}/{args.runs} done")
        rate = {c.key: fixed_rate(c.url, c.host, args.rate, args.duration) for c in cases if c.url}

    table = Table(title=f"data plane, median of {args.runs} runs")
    for column in ("case", "", "rps", "p50 ms", "p99 ms", f"@{args.rate} rps mean ms", "note"):
        table.add_column(column)
    for case in cases:
        fixed = rate.get(case.key)
        table.add_row(
            case.key,
            case.name,
            f"{case.rps:,.0f}" if case.runs else "-",
            f"{case.p50:.3f}" if case.runs else "-",
            f"{case.p99:.3f}" if case.runs else "-",
            f"{fixed['mean_ms']:.3f}" if fixed else "-",
            case.note,
        )
    console.print(table)
    by = {c.key: c for c in cases}
    d, c, a = by["d"], by["c"], by["a"]
    ratios = {
        "mesh/floor rps": d.rps / c.rps,
        "mesh/floor p99": d.p99 / c.p99,
        "mesh/direct rps": d.rps / a.rps,
        "mesh/direct p99": d.p99 / a.p99,
    }
    for target, ok in (
        ("(d) rps ≥ 0.9 x (c)", ratios["mesh/floor rps"] >= 0.9),
        ("(d) p99 ≤ 1.1 x (c)", ratios["mesh/floor p99"] <= 1.1),
    ):
        console.print(f"target {target}: {'[green]met[/]' if ok else '[red]MISSED[/]'}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"dataplane-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "date": stamp,
                "machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname())},
                "args": vars(args),
                "cases": {
                    c.key: {**asdict(c), "rps": c.rps, "p50_ms": c.p50, "p99_ms": c.p99}
                    for c in cases
                },
                "fixed_rate": rate,
                "ratios": ratios,
            },
            indent=2,
        )
    )
    console.print(f"results: {out}")
    print(
        f"dataplane: mesh/floor rps={ratios['mesh/floor rps']:.2f} p99={ratios['mesh/floor p99']:.2f} "
        f"mesh/direct rps={ratios['mesh/direct rps']:.2f} p99={ratios['mesh/direct p99']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
