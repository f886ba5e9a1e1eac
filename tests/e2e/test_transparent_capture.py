"""The pod traffic redirect, for real: two "pods" (network namespaces the test makes,
on a bridge in a third, the "node", where the control plane runs), each with the
iptables rules ``sidemesh redirect`` installs (what the injected init container runs)
and a captured sidecar. The app in one pod calls the other pod's address as if there
were no mesh; the call goes through both sidecars over mTLS, while the sidecars' own
connections (to the control plane, to the other pod, to their app) are not redirected
back into themselves.

The sidecars run as root and the apps as another user, so the redirect's exemption of
the proxy's user is what keeps the proxies out of their own capture."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.net import admin_get
from tests.helpers.netns import Namespace, Node, can_make_namespaces, node
from tests.helpers.processes import Started

pytestmark = pytest.mark.skipif(
    can_make_namespaces() is not None, reason=str(can_make_namespaces())
)

APP_UID = 1000
PROXY_UID = 0
XDS, CA, API = 15010, 15012, 15014
SERVER = """
import http.server, json, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"workload": sys.argv[2], "path": self.path,
                           "xfcc": self.headers.get("x-forwarded-client-cert", "")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
"""
TCP_SERVER = """
import socketserver, sys
class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline()
        self.wfile.write(b"tcp " + sys.argv[2].encode() + b" got " + line)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", int(sys.argv[1])), Handler).serve_forever()
"""
TCP_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as sock:
    sock.sendall(b"ping\\n")
    print(sock.makefile().readline().strip())
"""
CLIENT = """
import json, sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"Host": sys.argv[2]})
with urllib.request.urlopen(request, timeout=5) as reply:
    print(json.dumps({"status": reply.status, "body": json.loads(reply.read())}))
"""


def _mesh(a: Namespace, b: Namespace) -> str:
    return f"""
mesh: {{trustDomain: test.local}}
services:
  - {{name: a, ports: [{{port: 8080}}]}}
  - {{name: b, ports: [{{port: 9080, name: http}}, {{port: 5432, name: db, protocol: tcp}}]}}
workloads:
  - {{name: a-1, service: a, address: {a.address}, port: 8080, appPort: 8080,
     sidecar: {{capture: true, outboundPort: 15001}}}}
  - {{name: b-1, service: b, address: {b.address},
     ports: [{{name: http, port: 9080, appPort: 9080}}, {{name: db, port: 5432, appPort: 5432}}],
     sidecar: {{capture: true, outboundPort: 15001}}}}
"""


class Cluster(Started):
    def __init__(self, made: Node, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.node = made
        self.tmp_path = tmp_path
        self.state_dir = tmp_path / "state"


def _sidemesh(*args: str) -> list[str]:
    return [sys.executable, "-m", "sidemesh", *args]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Cluster, Namespace, Namespace]]:
    with node(f"{os.getpid() % 100000}", ["a", "b"]) as made:
        a, b = made.pods
        running = Cluster(made, tmp_path)
        config = tmp_path / "mesh.yaml"
        config.write_text(_mesh(a, b))
        try:
            running.start(
                made.node.command(
                    *_sidemesh(
                        "controlplane", "--config", str(config), "--state-dir", str(running.state_dir),
                        "--xds-host", made.node.address, "--xds-port", str(XDS),
                        "--api-host", made.node.address, "--api-port", str(API), "--ca-port", str(CA),
                        "--telemetry-interval", "0",
                    )
                ),
                "controlplane",
            )  # fmt: skip
            _wait(lambda: (running.state_dir / "tokens" / "b-1.default.token").exists(), running)
            for pod, workload, service, port in ((a, "a-1", "a", 8080), (b, "b-1", "b", 9080)):
                redirect = pod.run(*_sidemesh("redirect", "--proxy-uid", str(PROXY_UID)))
                assert redirect.returncode == 0, redirect.stderr
                running.start(
                    pod.command(sys.executable, "-c", SERVER, str(port), workload, uid=APP_UID),
                    f"app-{workload}",
                )
                if workload == "b-1":
                    running.start(
                        pod.command(
                            sys.executable, "-c", TCP_SERVER, "5432", workload, uid=APP_UID
                        ),
                        "app-b-1-tcp",
                    )
                sockets = tmp_path / f"sockets-{workload}"
                running.start(
                    pod.command(
                        *_sidemesh(
                            "sidecar", "--workload", workload, "--service", service,
                            "--control-plane", f"{made.node.address}:{XDS}",
                            "--ca-address", f"{made.node.address}:{CA}",
                            "--state-dir", str(running.state_dir), "--socket-dir", str(sockets),
                            "--workdir", str(tmp_path / workload), "--drain-seconds", "0",
                            "--concurrency", "1",
                        )
                    ),
                    f"sidecar-{workload}",
                )  # fmt: skip
            for workload in ("a-1", "b-1"):
                admin = tmp_path / f"sockets-{workload}" / "admin.sock"
                _wait(lambda admin=admin: _live(admin), running)  # type: ignore[misc]
            yield running, a, b
        finally:
            running.stop()


def _live(admin: Path) -> bool:
    try:
        return bool(admin.exists() and admin_get(admin, "/ready").text.strip() == "LIVE")
    except (OSError, httpx.HTTPError):
        return False


def _wait(check: object, running: Cluster, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"never came up:\n{running.logs()}")
        time.sleep(0.2)


def _stat(admin: Path, name: str) -> int:
    for line in admin_get(admin, "/stats", {"filter": f"^{re.escape(name)}$"}).text.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


def test_an_apps_plain_call_to_another_pod_goes_through_both_sidecars_over_mtls(
    cluster: tuple[Cluster, Namespace, Namespace],
) -> None:
    running, a, b = cluster
    a_admin = running.tmp_path / "sockets-a-1" / "admin.sock"
    b_admin = running.tmp_path / "sockets-b-1" / "admin.sock"
    calls = 3
    for i in range(calls):
        # The app knows nothing of the mesh: the other pod's address, the service's name.
        done = a.run(
            sys.executable,
            "-c",
            CLIENT,
            f"http://{b.address}:9080/hello/{i}",
            "b:9080",
            uid=APP_UID,
        )
        assert done.returncode == 0, f"{done.stderr}\n{running.logs()}"
        answer = json.loads(done.stdout)
        assert answer["status"] == 200
        assert answer["body"]["workload"] == "b-1" and answer["body"]["path"] == f"/hello/{i}"
    # The callee's sidecar saw the caller's mesh identity (mTLS), and told the app.
    assert "URI=spiffe://test.local/ns/default/sa/a" in answer["body"]["xfcc"]
    # The caller's sidecar sent each call, over the mesh cluster, with TLS.
    assert _stat(a_admin, "cluster.outbound|9080||b.default.upstream_rq_200") == calls
    assert _stat(a_admin, "cluster.outbound|9080||b.default.ssl.handshake") >= 1
    # Each call reached the caller's outbound listener once: its own connection to
    # the other pod was not redirected back into it (no loop).
    assert _stat(a_admin, "listener.127.0.0.1_15001.downstream_cx_total") == calls
    # The callee's capture port took the connection and handed it to the inbound
    # listener of its original destination, which binds no port of its own.
    assert _stat(b_admin, f"listener.{b.address}_9080.downstream_cx_total") >= 1
    assert _stat(b_admin, "cluster.inbound|9080|b.upstream_rq_200") == calls


def test_an_apps_plain_tcp_connection_to_another_pod_goes_through_both_sidecars(
    cluster: tuple[Cluster, Namespace, Namespace],
) -> None:
    """TCP names no Host: the caller's sidecar knows the service by the address and
    port the app dialled (the pod's here; a ClusterIP on Kubernetes)."""
    running, a, b = cluster
    a_admin = running.tmp_path / "sockets-a-1" / "admin.sock"
    b_admin = running.tmp_path / "sockets-b-1" / "admin.sock"
    done = a.run(sys.executable, "-c", TCP_CLIENT, b.address, "5432", uid=APP_UID)
    assert done.returncode == 0, f"{done.stderr}\n{running.logs()}"
    assert done.stdout.strip() == "tcp b-1 got ping"
    # Through a's sidecar, to the service's cluster, over mTLS; into b's sidecar.
    assert _stat(a_admin, "cluster.outbound|5432||b.default.upstream_cx_total") == 1
    assert _stat(a_admin, "cluster.outbound|5432||b.default.ssl.handshake") == 1
    assert _stat(b_admin, "cluster.inbound|5432|b.upstream_cx_total") == 1


def test_a_port_the_workload_does_not_serve_is_closed_by_its_sidecar(
    cluster: tuple[Cluster, Namespace, Namespace],
) -> None:
    running, _, b = cluster
    b_admin = running.tmp_path / "sockets-b-1" / "admin.sock"
    # Something listens on 7777 in b, outside the mesh. A caller outside the mesh (the
    # node, which has no redirect of its own) cannot slip past b's sidecar to it:
    # every inbound connection is captured, and one for a port b does not serve is closed.
    running.start(
        b.command(sys.executable, "-c", SERVER, "7777", "sneaky", uid=APP_UID), "app-sneaky"
    )
    _wait(lambda: b.run("ss", "-ltn").stdout.count(":7777") > 0, running)
    node = running.node.node
    done = node.run(sys.executable, "-c", CLIENT, f"http://{b.address}:7777/", "b:7777")
    assert done.returncode != 0 and "sneaky" not in done.stdout
    assert _stat(b_admin, "cluster.blackhole.upstream_cx_none_healthy") >= 1
    # Nor can it reach b's app on its own port in plaintext: b is STRICT.
    plain = node.run(sys.executable, "-c", CLIENT, f"http://{b.address}:9080/", "b:9080")
    assert plain.returncode != 0 and "b-1" not in plain.stdout
