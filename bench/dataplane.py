"""Data plane benchmark: sidemesh's path against Envoy's own floor and direct traffic.

Cases, measured in one run with the same load tool, connections and duration:
  a  direct        wrk → nginx
  b  envoy         wrk → one Envoy (hand-written minimal static config) → nginx
  c  envoy-mtls    wrk → Envoy → mTLS → Envoy (hand-written minimal static config) → nginx
  d  sidemesh      wrk → sidecar a → mTLS → sidecar b → nginx, config from the control plane
  e  sidemesh+obs  d's path between two other sidecars (o → mTLS → e → nginx) that a
                   Telemetry covers: tracing at 1% sampling (spans to the control plane
                   over OTLP) and a JSON access-log line for every request on both
  f  sidemesh+policy  d's path to a service with policies on (same mesh, same sidecar a):
                   an HTTPRoute of 10 rules (9 header, path, method and query matches
                   the load never meets, then a 90/10 weighted split between two
                   per-version services, selected by labels, each one workload whose
                   own sidecar fronts the same nginx), default retries and retry budget,
                   and a BackendPolicy with outlier detection and a circuit breaker
  g  sidemesh+authz  d's path to a service whose sidecar checks every request: a
                   RequestAuthentication (one RS256 token, key set inline, required)
                   and an AuthorizationPolicy of 20 ALLOW rules, 19 the load never
                   matches (other principals, paths, methods, hosts, headers, claims)
                   and one it does (caller's principal and the token's groups claim),
                   which Envoy tries last

nginx and every Envoy (one worker each) share CPU 0; wrk runs alone on CPU 1. Each
case runs --runs times (default 3) and the median is reported; then a fixed-rate run
of each case (h2load, --rate) gives its mean latency and the CPU nginx and the proxies
spent per request (from /proc). Case (f)'s config is checked on sidecar a (10 rules,
the split, retries, outlier detection, circuit breaker) and its requests are counted
by cluster (the split held, no request took a non-matching rule). Case (g)'s config is
checked on its callee's sidecar (the JWT filter and 20 RBAC rules), a request without a
token and one with another group are seen refused (401, 403) before the load, and the
load's requests are counted there (each allowed by the JWT filter and by the one rule
meant, none refused). Ends with one line:
  dataplane: mesh/floor rps=0.95 p99=1.04 mesh/direct rps=0.41 p99=2.30 policy/mesh rps=0.98 p99=1.02 authz/mesh rps=0.97 p99=1.03 obs/mesh rps=0.95 p99=1.05
where policy/mesh is (f)/(d) and authz/mesh is (g)/(d) (targets for both: rps >= 0.95,
p99 <= 1.05), and obs/mesh is (e)/(d) (target: rps >= 0.90, p99 <= 1.10).

Usage: python -m bench.dataplane [--duration 10] [--connections 32] [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from cryptography.hazmat.primitives import hashes
from rich.console import Console
from rich.table import Table

from sidemesh.agent.envoy_binary import find_envoy
from sidemesh.identity import CertificateAuthority, SpiffeId
from sidemesh.identity.ca import write_private
from tests.helpers.net import admin_get
from tests.helpers.tokens import Issuer

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
    requests: int = 0


@dataclass
class Case:
    key: str
    name: str
    url: str
    host: str = "backend"
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every request of the case, besides Host."""
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
        self.names: dict[int, str] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.procs.append(proc)
        self.names[proc.pid] = name

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds used so far by nginx and each proxy, by name: each process
        started here but the control plane, with what it started (a sidecar's Envoy),
        found by session."""
        names = {pid: name for pid, name in self.names.items() if name != "controlplane"}
        ticks = dict.fromkeys(names.values(), 0)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue  # ended meanwhile
            name = names.get(int(fields[3]))  # session id
            if name is not None:
                ticks[name] += int(fields[11]) + int(fields[12])  # utime + stime
        tick = os.sysconf("SC_CLK_TCK")
        return {name: n / tick for name, n in ticks.items()}

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
def start_nginx(procs: Procs, *ports: int) -> None:
    """One nginx (one worker) serving the same page on every port of ``ports``: each
    workload of the mesh needs its own app port."""
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
    {" ".join(f"listen 127.0.0.1:{port};" for port in ports)}
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
    from cryptography.hazmat.primitives import serialization
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
ROUTED = "routed"
"""Case (f)'s service: the one with an HTTPRoute, served by workloads v1 and v2."""
VERSIONS = {"v1": 90, "v2": 10}
"""Case (f)'s per-version services (``routed-v1``, ``routed-v2``) and their weights."""
NOT_MATCHING_RULES = """\
    - matches: [{headers: [{name: end-user, value: jason}]}]
      backendRefs: [{name: routed, port: 80}]
    - matches: [{headers: [{name: x-canary, value: "true"}, {name: x-team, value: search}]}]
      backendRefs: [{name: routed, port: 80}]
    - matches: [{headers: [{type: RegularExpression, name: x-tenant, value: "^team-[a-z]+$"}]}]
      backendRefs: [{name: routed, port: 80}]
    - matches: [{path: {type: PathPrefix, value: /api/v1}}]
      backendRefs: [{name: routed, port: 80}]
    - matches: [{path: {type: PathPrefix, value: /api/v2}, headers: [{name: x-beta, value: "1"}]}]
      backendRefs: [{name: routed, port: 80}]
    - matches: [{path: {type: Exact, value: /healthz}}]
      backendRefs: [{name: routed, port: 80}]
    - matches: [{path: {type: RegularExpression, value: "/items/[0-9]+"}}]
      backendRefs: [{name: routed, port: 80}]
    - matches: [{method: POST}]
      backendRefs: [{name: routed, port: 80}]
    - matches: [{queryParams: [{name: debug, value: "1"}]}]
      backendRefs: [{name: routed, port: 80}]
"""
"""Nine rules no request of the load matches (it sends GET / with no such header or
query). They send to ``routed`` itself, so a request that took one shows in its cluster."""


def policy_documents() -> str:
    """Case (f)'s HTTPRoute and BackendPolicy, as mesh.yaml's documents after the first.

    The circuit breaker's limits are far above what 32 connections use, so it is
    checked on every request and never trips; outlier detection counts every response
    and never ejects (nginx answers 200). Retries are the defaults (no ``retry`` in the
    rules), with the default retry budget, as in case (d)."""
    split = "".join(
        f"\n        - {{name: {ROUTED}-{version}, port: 80, weight: {weight}}}"
        for version, weight in VERSIONS.items()
    )
    targets = ", ".join(f"{{name: {ROUTED}-{version}}}" for version in VERSIONS)
    return f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {ROUTED}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: {ROUTED}, port: 80}}]
  rules:
{NOT_MATCHING_RULES}    - backendRefs:{split}
---
apiVersion: sidemesh.io/v1alpha1
kind: BackendPolicy
metadata: {{name: {ROUTED}-versions}}
spec:
  targetRefs: [{targets}]
  connectionPool: {{maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024}}
  outlierDetection: {{consecutive5xxErrors: 5, consecutiveGatewayErrors: 5, interval: 10s,
    baseEjectionTime: 30s, maxEjectionPercent: 50}}
"""


GUARDED = "guarded"
"""Case (g)'s service: every request to it is checked by its sidecar (JWT and RBAC)."""
ISSUER = "https://issuer.bench.local"
GROUP = "bench"
"""The ``groups`` claim of the load's token, which the matching rule asks for."""
ACCOUNTS = "bench.local/ns/default/sa"
CALLER = f"{ACCOUNTS}/client"
"""Sidecar a's identity (workload a serves ``client``), as a policy writes it."""
RULES = 20
MATCHING_RULE = max(range(RULES), key=lambda i: f"rule-{i}")
"""The index of the rule the load matches: the one Envoy tries last. Envoy keeps an RBAC
filter's policies by name (``.../rule-0``, ``rule-1``, ``rule-10`` ... ``rule-19``,
``rule-2`` ... ``rule-9``) and stops at the first that matches, so with the matching
rule at ``rule-9`` every request is first tried against the 19 others; as the 20th
rule of the document (``rule-19``) it would be tried 12th."""
NOT_MATCHING_AUTHZ_RULES = (
    f'{{from: [{{source: {{principals: ["{ACCOUNTS}/nobody-1"]}}}}]}}',
    f'{{from: [{{source: {{principals: ["{ACCOUNTS}/nobody-2", "{ACCOUNTS}/nobody-3"]}}}}]}}',
    f'{{from: [{{source: {{principals: ["spiffe://{ACCOUNTS}/nobody-4"]}}}}],'
    " to: [{operation: {methods: [GET]}}]}",
    "{from: [{source: {serviceAccounts: [default/nobody-5]}}]}",
    f'{{from: [{{source: {{principals: ["{ACCOUNTS}/nobody-*"]}}}}]}}',
    '{from: [{source: {requestPrincipals: ["https://other.issuer/*"]}}]}',
    '{from: [{source: {ipBlocks: ["10.0.0.0/8"]}}]}',
    '{to: [{operation: {paths: ["/admin", "/admin/*"]}}]}',
    '{to: [{operation: {paths: ["/api/v1/*"], methods: [GET]}}]}',
    '{to: [{operation: {paths: ["/users/{id}/orders"]}}]}',
    '{to: [{operation: {paths: ["*.json"]}}]}',
    "{to: [{operation: {methods: [POST, PUT, DELETE]}}]}",
    "{to: [{operation: {hosts: [secret.local]}}]}",
    '{when: [{key: "request.headers[x-role]", values: [admin]}]}',
    '{when: [{key: "request.headers[x-tenant]", values: ["team-*"]}]}',
    '{when: [{key: "request.auth.claims[groups]", values: [admins]}]}',
    f'{{when: [{{key: "request.auth.principal", values: ["{ISSUER}/root"]}}]}}',
    f'{{from: [{{source: {{principals: ["{CALLER}"]}}}}],'
    ' to: [{operation: {paths: ["/private/*"]}}]}',
    f'{{from: [{{source: {{principals: ["{CALLER}"]}}}}],'
    ' when: [{key: "request.auth.claims[groups]", values: [ops]}]}',
)
"""Nineteen rules the load (sidecar a's identity, GET /, Host ``guarded``, a token of
group ``bench``, no other header) never matches: other callers, paths, methods, hosts,
headers, claims, and two that match the caller but not the path or the claim."""
MATCHING_AUTHZ_RULE = (
    f'{{from: [{{source: {{principals: ["{CALLER}"]}}}}],'
    f' when: [{{key: "request.auth.claims[groups]", values: [{GROUP}]}}]}}'
)


def token_issuer() -> Issuer:
    """Case (g)'s JWT issuer (the tests' own: an RSA key, its key set, RS256 tokens)."""
    return Issuer(name=ISSUER, kid="bench-1")


def bench_token(issuer: Issuer, groups: list[str]) -> str:
    return issuer.token(subject="bench-user", audience=GUARDED, lifetime_s=86400, groups=groups)


def authz_documents(issuer: Issuer) -> str:
    """Case (g)'s RequestAuthentication and AuthorizationPolicy, as mesh.yaml's
    documents."""
    rules = list(NOT_MATCHING_AUTHZ_RULES)
    rules.insert(MATCHING_RULE, MATCHING_AUTHZ_RULE)
    assert len(rules) == RULES
    return f"""---
apiVersion: sidemesh.io/v1alpha1
kind: RequestAuthentication
metadata: {{name: {GUARDED}-jwt}}
spec:
  targetRefs: [{{name: {GUARDED}}}]
  required: true
  jwtRules:
    - issuer: "{issuer.name}"
      audiences: [{GUARDED}]
      jwks: {json.dumps(issuer.jwks())}
---
apiVersion: sidemesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: {GUARDED}}}
spec:
  targetRefs: [{{name: {GUARDED}}}]
  action: ALLOW
  rules:
""" + "".join(f"    - {rule}\n" for rule in rules)


OBSERVER, OBSERVED = "observer", "observed"
"""Case (e)'s caller and callee services, which its Telemetry covers."""
OBSERVED_SAMPLING = 1.0

SIDECARS = {
    "a": "client",
    "b": "backend",
    "v1": ROUTED,
    "v2": ROUTED,
    "g": GUARDED,
    "o": OBSERVER,
    "e": OBSERVED,
}
"""Sidecar → the service its workload names (v1 and v2 also serve routed-v1/-v2)."""


def observability_documents() -> str:
    """Case (e)'s Telemetry: 1% of requests traced, every request logged."""
    return f"""---
apiVersion: sidemesh.io/v1alpha1
kind: Telemetry
metadata: {{name: observed}}
spec:
  targetRefs: [{{name: {OBSERVER}}}, {{name: {OBSERVED}}}]
  tracing: {{randomSamplingPercentage: {OBSERVED_SAMPLING}}}
  accessLogging: {{requests: All}}
"""


class Sidemesh(NamedTuple):
    ports: dict[str, int]
    """Each sidecar's ``<name>_in`` and ``<name>_out``, and the control plane's."""
    admin: dict[str, Path]
    """Each sidecar's Envoy admin socket."""

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"


def observability_counts(workdir: Path, api: str) -> dict[str, int]:
    """Case (e)'s evidence: the access-log lines its callee's sidecar wrote, and the
    spans the control plane received."""
    log = (workdir / "sidecar-e.log").read_bytes()
    traces = httpx.get(f"{api}/v1/traces?limit=1", timeout=10).json()
    return {"access_lines": log.count(b'"log":"access"'), "spans": traces["spansReceived"]}


def start_sidemesh(procs: Procs, app_ports: dict[str, int], issuer: Issuer) -> Sidemesh:
    """Control plane + sidecars a (the caller), b (case d's backend), v1 and v2 (case
    f's), g (case g's, its tokens signed by ``issuer``), o and e (case e's caller and
    callee), whose apps are nginx's ``app_ports`` by sidecar."""
    ports = {f"{name}_{kind}": free_port() for name in SIDECARS for kind in ("in", "out")}
    ports.update({k: free_port() for k in ("xds", "api", "ca", "a_app", "o_app")})
    mesh = procs.workdir / "mesh.yaml"
    mesh.write_text(
        f"""
mesh: {{trustDomain: bench.local}}
services:
  - {{name: client, ports: [{{port: 8080}}]}}
  - {{name: backend, ports: [{{port: 80}}]}}
  - {{name: {ROUTED}, ports: [{{port: 80}}]}}
  - {{name: {ROUTED}-v1, ports: [{{port: 80}}], selector: {{version: v1}}}}
  - {{name: {ROUTED}-v2, ports: [{{port: 80}}], selector: {{version: v2}}}}
  - {{name: {GUARDED}, ports: [{{port: 80}}]}}
  - {{name: {OBSERVER}, ports: [{{port: 8080}}]}}
  - {{name: {OBSERVED}, ports: [{{port: 80}}]}}
workloads:
  - {{name: a, service: client, port: {ports["a_in"]}, appPort: {ports["a_app"]},
      sidecar: {{outboundPort: {ports["a_out"]}}}}}
  - {{name: b, service: backend, port: {ports["b_in"]}, appPort: {app_ports["b"]},
      sidecar: {{outboundPort: {ports["b_out"]}}}}}
  - {{name: v1, service: {ROUTED}, labels: {{version: v1}}, port: {ports["v1_in"]},
      appPort: {app_ports["v1"]},
      sidecar: {{outboundPort: {ports["v1_out"]}}}}}
  - {{name: v2, service: {ROUTED}, labels: {{version: v2}}, port: {ports["v2_in"]},
      appPort: {app_ports["v2"]},
      sidecar: {{outboundPort: {ports["v2_out"]}}}}}
  - {{name: g, service: {GUARDED}, port: {ports["g_in"]}, appPort: {app_ports["g"]},
      sidecar: {{outboundPort: {ports["g_out"]}}}}}
  - {{name: o, service: {OBSERVER}, port: {ports["o_in"]}, appPort: {ports["o_app"]},
      sidecar: {{outboundPort: {ports["o_out"]}}}}}
  - {{name: e, service: {OBSERVED}, port: {ports["e_in"]}, appPort: {app_ports["e"]},
      sidecar: {{outboundPort: {ports["e_out"]}}}}}
"""
        + policy_documents()
        + authz_documents(issuer)
        + observability_documents()
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
    for name, service in SIDECARS.items():
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
                    service,
                    "--control-plane",
                    f"127.0.0.1:{ports['xds']}",
                    "--ca-address",
                    f"127.0.0.1:{ports['ca']}",
                    "--state-dir",
                    str(state),
                    "--socket-dir",
                    str(procs.workdir / f"{name}.sockets"),
                    "--concurrency",
                    "1",
                    "--log-level",
                    "error",
                ],
            ),
        )
    admin = {name: procs.workdir / f"{name}.sockets" / "admin.sock" for name in SIDECARS}
    return Sidemesh(ports, admin)


def wait_http(
    url: str,
    what: str,
    host: str | None = None,
    timeout: float = 60,
    headers: dict[str, str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sent = {**({"Host": host} if host else {}), **(headers or {})}
            reply = httpx.get(url, headers=sent, timeout=2)
            if reply.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(f"bench: {what} did not answer {url} within {timeout:.0f}s")


# --- case (f): what sidecar a was given, and where its requests went ------------------
def _cluster_name(version: str | None) -> str:
    service = f"{ROUTED}-{version}" if version else ROUTED
    return f"outbound|80||{service}.default"


def policy_config_problems(admin: Path) -> list[str]:
    """What is missing from case (f)'s config as sidecar a runs it (its admin
    /config_dump): empty when it has the route of 10 rules with the split last, retries
    on every rule, and outlier detection and a circuit breaker on both versions."""
    dump = admin_get(admin, "/config_dump", timeout=10).json()
    hosts: list[dict[str, Any]] = []
    clusters: dict[str, dict[str, Any]] = {}
    for section in dump["configs"]:
        for entry in section.get("dynamic_route_configs", []):
            hosts += entry["route_config"].get("virtual_hosts", [])
        for entry in section.get("dynamic_active_clusters", []):
            clusters[entry["cluster"]["name"]] = entry["cluster"]
    problems = []
    host = next((h for h in hosts if h["name"] == f"{ROUTED}.default:80"), None)
    if host is None:
        return [f"no virtual host {ROUTED}.default:80 on sidecar a"]
    routes = host["routes"]
    if len(routes) != 10:
        problems.append(f"{len(routes)} routes for {ROUTED}, not 10")
    split = {
        c["name"]: c["weight"]
        for c in routes[-1].get("route", {}).get("weighted_clusters", {}).get("clusters", [])
    }
    wanted = {_cluster_name(v): w for v, w in VERSIONS.items()}
    if split != wanted:
        problems.append(f"last rule splits {split}, not {wanted}")
    if not all(r.get("route", {}).get("retry_policy", {}).get("retry_on") for r in routes):
        problems.append("a rule without retries")
    for version in VERSIONS:
        cluster = clusters.get(_cluster_name(version), {})
        if "outlier_detection" not in cluster:
            problems.append(f"no outlier detection on {_cluster_name(version)}")
        thresholds = cluster.get("circuit_breakers", {}).get("thresholds", [{}])[0]
        if "max_requests" not in thresholds or "retry_budget" not in thresholds:
            problems.append(f"no circuit breaker or retry budget on {_cluster_name(version)}")
    return problems


def policy_requests(admin: Path) -> dict[str, int]:
    """Sidecar a's counters for case (f)'s clusters: requests by version, requests that
    took a non-matching rule (to ``routed`` itself), retries, breaker overflows and
    outlier ejections."""
    text = admin_get(admin, "/stats", {"filter": ROUTED}, timeout=10).text
    stats = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            stats[name.strip()] = int(value)

    def total(suffix: str, versions: tuple[str | None, ...] = tuple(VERSIONS)) -> int:
        return sum(stats.get(f"cluster.{_cluster_name(v)}.{suffix}", 0) for v in versions)

    return {
        **{v: total("upstream_rq_total", (v,)) for v in VERSIONS},
        "not_matching_rules": total("upstream_rq_total", (None,)),
        "retries": total("upstream_rq_retry"),
        "overflows": total("upstream_rq_pending_overflow") + total("upstream_cx_overflow"),
        "ejections": total("outlier_detection.ejections_enforced_total"),
    }


# --- case (g): what the guarded sidecar was given, and what it decided -----------------
AUTHZ_STATS = f"http.inbound_80_{GUARDED}."
"""The prefix of the guarded sidecar's counters for its inbound port 80."""
MATCHING_RULE_NAME = f"default/{GUARDED}/rule-{MATCHING_RULE}"


def _http_filters(dump: dict[str, Any], stat_prefix: str) -> list[list[dict[str, Any]]]:
    """The HTTP filters of every filter chain whose connection manager counts under
    ``stat_prefix``, from an admin /config_dump."""
    chains = []
    for section in dump["configs"]:
        for entry in section.get("dynamic_listeners", []):
            listener = entry.get("active_state", {}).get("listener", {})
            for chain in listener.get("filter_chains", []):
                for network_filter in chain.get("filters", []):
                    config = network_filter.get("typed_config", {})
                    if config.get("stat_prefix") == stat_prefix:
                        chains.append(config.get("http_filters", []))
    return chains


def authz_config_problems(admin: Path) -> list[str]:
    """What is missing from case (g)'s config as the guarded sidecar runs it: empty when
    each inbound filter chain of ``guarded`` checks a token (one provider, key set
    inline, required on every path) and then the 20 ALLOW rules, the matching one tried
    last."""
    dump = admin_get(admin, "/config_dump", timeout=10).json()
    chains = _http_filters(dump, AUTHZ_STATS.removeprefix("http.").rstrip("."))
    if not chains:
        return [f"no inbound listener for {GUARDED} on its sidecar"]
    problems = []
    for filters in chains:
        names = [f["name"] for f in filters]
        if names[-3:] != [
            "envoy.filters.http.jwt_authn",
            "envoy.filters.http.rbac",
            "envoy.filters.http.router",
        ]:
            problems.append(f"inbound filters {names}, not jwt_authn, rbac, router")
            continue
        jwt, rbac = filters[-3]["typed_config"], filters[-2]["typed_config"]
        providers = jwt.get("providers", {})
        if len(providers) != 1 or not all(
            "inline_string" in p.get("local_jwks", {}) for p in providers.values()
        ):
            problems.append(f"{len(providers)} JWT providers, not 1 with an inline key set")
        required = [
            {"match": {"prefix": "/"}, "requires": {"provider_name": name}} for name in providers
        ]
        if jwt.get("rules") != required:
            problems.append(f"a token is not required on every request: {jwt.get('rules')}")
        rules = rbac.get("rules", {})
        policies = sorted(rules.get("policies", {}))
        if rules.get("action", "ALLOW") != "ALLOW" or len(policies) != RULES:
            problems.append(f"RBAC {rules.get('action', 'ALLOW')} of {len(policies)} rules")
        elif policies[-1] != MATCHING_RULE_NAME:
            problems.append(f"Envoy tries {policies[-1]} last, not {MATCHING_RULE_NAME}")
    return problems


def authz_refusals(url: str, issuer: Issuer) -> list[str]:
    """Case (g) refuses what it should: a request without a token (401) and one whose
    token has a group no rule allows (403), through sidecar a as the load goes."""
    problems = []
    for what, headers, wanted in (
        ("without a token", {}, 401),
        (
            "with a token of another group",
            {"Authorization": f"Bearer {bench_token(issuer, ['nobody'])}"},
            403,
        ),
    ):
        status = httpx.get(url, headers={"Host": GUARDED, **headers}, timeout=10).status_code
        if status != wanted:
            problems.append(f"a request {what} got {status}, not {wanted}")
    return problems


def authz_counters(admin: Path) -> dict[str, int]:
    """The guarded sidecar's counters of its inbound port, without the common prefix
    (``jwt_authn.allowed``, ``rbac.allow.allowed``, ``downstream_rq_4xx``, ...)."""
    text = admin_get(admin, "/stats", {"filter": f"^{re.escape(AUTHZ_STATS)}"}, timeout=10).text
    stats = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if name.startswith(AUTHZ_STATS) and value.strip().isdigit():
            stats[name.removeprefix(AUTHZ_STATS)] = int(value)
    return stats


def authz_load_problems(counted: dict[str, int], sent: int) -> list[str]:
    """What is wrong with how the guarded sidecar decided the load (``counted``: the
    change of its counters over the load; ``sent``: the requests wrk and h2load saw
    answered): every request allowed by the JWT filter and by the matching rule, none
    refused."""
    allowed = counted.get("rbac.allow.allowed", 0)
    by_rule = counted.get(f"rbac.allow.policy.{MATCHING_RULE_NAME}.allowed", 0)
    problems = [
        f"{counted.get(name, 0):,} {what}"
        for name, what in (
            ("jwt_authn.denied", "refused by the JWT filter"),
            ("rbac.allow.denied", "refused by RBAC"),
            ("downstream_rq_4xx", "answered 4xx"),
            ("downstream_rq_5xx", "answered 5xx"),
        )
        if counted.get(name, 0)
    ]
    if allowed < sent:
        problems.append(f"RBAC allowed {allowed:,} requests, fewer than the {sent:,} sent")
    if not allowed == by_rule == counted.get("jwt_authn.allowed", 0):
        problems.append(
            f"RBAC allowed {allowed:,}, {by_rule:,} of them by {MATCHING_RULE_NAME}; "
            f"the JWT filter allowed {counted.get('jwt_authn.allowed', 0):,}"
        )
    return problems


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
    done = re.search(r"^\s*(\d+) requests in", output, re.M)
    return Run(
        rps=rps, p50_ms=pct("50"), p99_ms=pct("99"), requests=int(done.group(1)) if done else 0
    )


def _header_args(flag: str, headers: dict[str, str]) -> list[str]:
    return [arg for name, value in headers.items() for arg in (flag, f"{name}: {value}")]


def wrk(
    url: str, host: str, duration: int, connections: int, headers: dict[str, str] | None = None
) -> Run:
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
                *_header_args("-H", headers or {}),
                url,
            ],
        ),
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    if "Requests/sec:" not in result.stdout:
        raise RuntimeError(
            f"wrk against {url} (Host {host}) exited {result.returncode} without a result:\n"
            f"{result.stdout}{result.stderr}"
        )
    return parse_wrk(result.stdout)


def fixed_rate(
    url: str,
    host: str,
    rate: int,
    duration: int,
    cpu_s: Callable[[], dict[str, float]],
    headers: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    """Latency at a constant request rate (h2load --rps), if h2load is installed, and
    the CPU nginx and the proxies spent per request meanwhile, in all and by process
    (``cpu_s``: their CPU seconds so far, by name)."""
    h2load = shutil.which("h2load")
    if h2load is None:
        return None
    clients = 10
    cpu_before = cpu_s()
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
                *_header_args("-H", headers or {}),
                url,
            ],
        ),
        capture_output=True,
        text=True,
        timeout=duration + 60,
    )
    cpu_after = cpu_s()
    cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", result.stdout)
    ok = re.search(r"status codes: (\d+) 2xx", result.stdout)
    if not m or not ok or int(ok.group(1)) != rate * duration:
        raise RuntimeError(f"fixed-rate run failed or saw errors:\n{result.stdout}")

    def ms(text: str) -> float:
        n = re.match(r"([\d.]+)(us|ms|s)", text)
        assert n
        return float(n.group(1)) * _UNITS[n.group(2)]

    return {
        "min_ms": ms(m.group(1)),
        "max_ms": ms(m.group(2)),
        "mean_ms": ms(m.group(3)),
        "cpu_us_per_request": sum(cpu.values()) / (rate * duration) * 1e6,
        "cpu_us_per_request_by_process": {
            name: seconds / (rate * duration) * 1e6
            for name, seconds in sorted(cpu.items())
            if seconds > 0
        },
    }


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
        app_ports = {
            "b": free_port(),
            **{v: free_port() for v in VERSIONS},
            "g": free_port(),
            "e": free_port(),
        }
        start_nginx(procs, backend, *app_ports.values())
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
        issuer = token_issuer()
        mesh = start_sidemesh(procs, app_ports, issuer)
        mesh_port, mesh_admin, guarded_admin = mesh.ports["a_out"], mesh.admin["a"], mesh.admin["g"]
        cases = [
            Case("a", "direct", f"http://127.0.0.1:{backend}/"),
            Case("b", "one Envoy, static", f"http://127.0.0.1:{envoy_port}/"),
            Case("c", "two Envoys, static mTLS", f"http://127.0.0.1:{client_port}/"),
            Case(
                "d", "sidemesh (2 sidecars, mTLS)", f"http://127.0.0.1:{mesh_port}/", host="backend"
            ),
            Case(
                "e",
                f"sidemesh + tracing ({OBSERVED_SAMPLING:g}%) + access log of every request",
                f"http://127.0.0.1:{mesh.ports['o_out']}/",
                host=OBSERVED,
            ),
            Case(
                "f",
                "sidemesh + policies (route of 10 rules, 90/10 split, retries, outlier "
                "detection, circuit breaker)",
                f"http://127.0.0.1:{mesh_port}/",
                host=ROUTED,
            ),
            Case(
                "g",
                f"sidemesh + JWT + {RULES} ALLOW rules (the match tried last)",
                f"http://127.0.0.1:{mesh_port}/",
                host=GUARDED,
                headers={"Authorization": f"Bearer {bench_token(issuer, [GROUP])}"},
            ),
        ]
        for case in cases:
            if case.url:
                wait_http(case.url, case.name, case.host, headers=case.headers)
        by = {c.key: c for c in cases}
        authz_problems = authz_config_problems(guarded_admin)
        authz_problems += authz_refusals(by["g"].url, issuer)
        authz_before = authz_counters(guarded_admin)
        console.print(
            f"{args.runs} runs x {args.duration}s per case, wrk -t1 -c{args.connections} on CPU "
            f"{LOAD_CPU}; nginx and Envoys (1 worker each) on CPU {PROXY_CPU}; {len(BODY)}-byte body"
        )
        for run in range(args.runs):
            for case in cases:  # interleaved, so drift on a noisy machine hits every case
                if case.url:
                    case.runs.append(
                        wrk(case.url, case.host, args.duration, args.connections, case.headers)
                    )
            console.print(f"  run {run + 1}/{args.runs} done")
        rate = {
            c.key: fixed_rate(c.url, c.host, args.rate, args.duration, procs.cpu_s, c.headers)
            for c in cases
            if c.url
        }
        policy_problems = policy_config_problems(mesh_admin)
        counted = policy_requests(mesh_admin)
        authz_after = authz_counters(guarded_admin)
        time.sleep(2)  # the last access-log lines flushed, the last spans exported
        observed = observability_counts(procs.workdir, mesh.api)
    authz_counted = {name: value - authz_before.get(name, 0) for name, value in authz_after.items()}
    authz_sent = sum(r.requests for r in by["g"].runs) + (
        args.rate * args.duration if rate.get("g") else 0
    )
    authz_problems += authz_load_problems(authz_counted, authz_sent)

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
    if any(rate.values()):
        console.print(
            f"CPU per request at {args.rate} rps (nginx + every proxy, from /proc; "
            "steadier than throughput on a busy machine, not immune to it): "
            + ", ".join(
                f"({key}) {fixed['cpu_us_per_request']:.0f} µs"
                for key, fixed in rate.items()
                if fixed
            )
        )
    d, c, a, f, g, e = by["d"], by["c"], by["a"], by["f"], by["g"], by["e"]
    ratios = {
        "mesh/floor rps": d.rps / c.rps,
        "mesh/floor p99": d.p99 / c.p99,
        "mesh/direct rps": d.rps / a.rps,
        "mesh/direct p99": d.p99 / a.p99,
        "policy/mesh rps": f.rps / d.rps,
        "policy/mesh p99": f.p99 / d.p99,
        "authz/mesh rps": g.rps / d.rps,
        "authz/mesh p99": g.p99 / d.p99,
        "obs/mesh rps": e.rps / d.rps,
        "obs/mesh p99": e.p99 / d.p99,
    }
    fixed_f, fixed_d = rate.get("f"), rate.get("d")
    if fixed_f and fixed_d:
        ratios["policy/mesh cpu"] = fixed_f["cpu_us_per_request"] / fixed_d["cpu_us_per_request"]
        caller_f = fixed_f["cpu_us_per_request_by_process"].get("sidecar-a", math.nan)
        caller_d = fixed_d["cpu_us_per_request_by_process"].get("sidecar-a", math.nan)
        ratios["policy/mesh cpu sidecar a"] = caller_f / caller_d
    fixed_g = rate.get("g")
    if fixed_g and fixed_d:
        ratios["authz/mesh cpu"] = fixed_g["cpu_us_per_request"] / fixed_d["cpu_us_per_request"]
        callee_g = fixed_g["cpu_us_per_request_by_process"].get("sidecar-g", math.nan)
        callee_d = fixed_d["cpu_us_per_request_by_process"].get("sidecar-b", math.nan)
        ratios["authz/mesh cpu callee"] = callee_g / callee_d
    observed_sent = sum(r.requests for r in e.runs) + (
        args.rate * args.duration if rate.get("e") else 0
    )
    console.print(
        f"(e): {observed['access_lines']:,} access-log lines on sidecar e for "
        f"{observed_sent:,} requests sent; {observed['spans']:,} spans received by the control "
        f"plane ({OBSERVED_SAMPLING:g}% of requests traced, 2 spans each: about "
        f"{observed_sent * OBSERVED_SAMPLING / 100 * 2:,.0f} expected)"
    )
    routed = sum(counted[v] for v in VERSIONS)
    console.print(
        f"(f) on sidecar a: {routed:,} requests to the split, "
        + ", ".join(f"{v} {counted[v] / max(1, routed):.1%}" for v in VERSIONS)
        + f" (weights {'/'.join(str(w) for w in VERSIONS.values())}); "
        f"{counted['not_matching_rules']} took a non-matching rule; retries "
        f"{counted['retries']}, breaker overflows {counted['overflows']}, "
        f"outlier ejections {counted['ejections']}"
    )
    n = authz_counted.get
    hits = n("jwt_authn.jwt_cache_hit", 0)
    cache = (
        f"token cache hits {hits:,}"
        if hits
        else "no token cache hits: the signature is checked on each"
    )
    console.print(
        f"(g) on sidecar g, over the load: {n('jwt_authn.allowed', 0):,} requests allowed by "
        f"the JWT filter ({cache}), {n('rbac.allow.allowed', 0):,} by RBAC, "
        f"{n(f'rbac.allow.policy.{MATCHING_RULE_NAME}.allowed', 0):,} of them by "
        f"{MATCHING_RULE_NAME} (tried last of {RULES}); {authz_sent:,} answered as wrk and "
        f"h2load counted; refused by JWT {n('jwt_authn.denied', 0)}, by RBAC "
        f"{n('rbac.allow.denied', 0)}, 4xx {n('downstream_rq_4xx', 0)}"
    )
    if fixed_d:
        fixed_by_key = {"d": fixed_d, "f": fixed_f, "g": fixed_g}
        for key, fixed in ((k, v) for k, v in fixed_by_key.items() if v):
            console.print(
                f"({key}) CPU per request at {args.rate} rps by process (µs): "
                + ", ".join(
                    f"{name} {us:.0f}"
                    for name, us in fixed["cpu_us_per_request_by_process"].items()
                    if us >= 1
                )
            )
    if fixed_f and fixed_d:
        console.print(
            f"(f)/(d) CPU per request: {ratios['policy/mesh cpu']:.2f} in all, "
            f"{ratios['policy/mesh cpu sidecar a']:.2f} in the calling sidecar (a), which "
            "holds the route and the policy"
        )
    if fixed_g and fixed_d:
        console.print(
            f"(g)/(d) CPU per request: {ratios['authz/mesh cpu']:.2f} in all, "
            f"{ratios['authz/mesh cpu callee']:.2f} in the called sidecar (g against b), "
            "which checks the token and the rules"
        )
    if policy_problems:
        console.print("[red]case (f) is not what it claims:[/] " + "; ".join(policy_problems))
    if authz_problems:
        console.print("[red]case (g) is not what it claims:[/] " + "; ".join(authz_problems))
    else:
        console.print(
            "case (g) is what it claims: its sidecar runs the JWT filter (token required, "
            f"key set inline) and {RULES} ALLOW rules, {MATCHING_RULE_NAME} tried last; "
            "before the load a request without a token got 401 and one of another group "
            "403; every request of the load passed both, by the rule meant, none refused"
        )
    for target, ok in (
        ("(d) rps ≥ 0.9 x (c)", ratios["mesh/floor rps"] >= 0.9),
        ("(d) p99 ≤ 1.1 x (c)", ratios["mesh/floor p99"] <= 1.1),
        ("(f) rps ≥ 0.95 x (d)", ratios["policy/mesh rps"] >= 0.95),
        ("(f) p99 ≤ 1.05 x (d)", ratios["policy/mesh p99"] <= 1.05),
        ("(g) rps ≥ 0.95 x (d)", ratios["authz/mesh rps"] >= 0.95),
        ("(g) p99 ≤ 1.05 x (d)", ratios["authz/mesh p99"] <= 1.05),
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
                    c.key: {
                        **asdict(c),
                        "headers": sorted(c.headers),  # names only: no token in the file
                        "rps": c.rps,
                        "p50_ms": c.p50,
                        "p99_ms": c.p99,
                    }
                    for c in cases
                },
                "fixed_rate": rate,
                "ratios": ratios,
                "policy_case": {
                    "mesh_yaml_policies": policy_documents(),
                    "requests": counted,
                    "config_problems": policy_problems,
                },
                "authz_case": {
                    "mesh_yaml_policies": authz_documents(issuer),
                    "counters": authz_counted,
                    "sent": authz_sent,
                    "problems": authz_problems,
                },
            },
            indent=2,
        )
    )
    console.print(f"results: {out}")
    print(
        f"dataplane: mesh/floor rps={ratios['mesh/floor rps']:.2f} p99={ratios['mesh/floor p99']:.2f} "
        f"mesh/direct rps={ratios['mesh/direct rps']:.2f} p99={ratios['mesh/direct p99']:.2f} "
        f"policy/mesh rps={ratios['policy/mesh rps']:.2f} p99={ratios['policy/mesh p99']:.2f} "
        f"authz/mesh rps={ratios['authz/mesh rps']:.2f} p99={ratios['authz/mesh p99']:.2f} "
        f"obs/mesh rps={ratios['obs/mesh rps']:.2f} p99={ratios['obs/mesh p99']:.2f}"
    )
    return 1 if policy_problems or counted["not_matching_rules"] or authz_problems else 0


if __name__ == "__main__":
    sys.exit(main())
