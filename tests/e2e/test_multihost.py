"""A mesh on several hosts. Each host is a network namespace the test makes, plugged
into a bridge in a "node" namespace where etcd (Debian's etcd-server) and the control
plane run; every address is one of the test's own. Sidecars on the hosts register their
workloads in etcd and talk to the control plane over mTLS (it is not on their
loopback); callers reach services on other hosts by name, mTLS end to end.

Shown here: calls by name across hosts; a host taken away (its link cut) leaves every
proxy within the lease TTL + 2 s while the callers' success rate holds; a sidecar that
presents one workload's certificate and asks for another's config is refused, and so
is plaintext xDS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.etcd import EtcdCluster, etcd_missing
from tests.helpers.net import admin_get
from tests.helpers.netns import HTTP_CLIENT, HTTP_SERVER, Namespace, Node, can_make_namespaces, node
from tests.helpers.processes import Started

pytestmark = [
    pytest.mark.skipif(can_make_namespaces() is not None, reason=str(can_make_namespaces())),
    pytest.mark.skipif(etcd_missing() is not None, reason=str(etcd_missing())),
]

REPLICAS = ((15010, 15012, 15014), (15020, 15022, 15024))
"""(xDS, CA, API) ports of the two control plane replicas, both in the node namespace."""
XDS, CA, API = REPLICAS[0]
ETCD = 2379
LEASE_TTL_S = 3
MESH = """
mesh: {trustDomain: test.local}
services:
  - {name: a, ports: [{port: 8080}]}
  - {name: b, ports: [{port: 9080}]}
  - {name: b-2-only, ports: [{port: 9080}], selector: {host: h2}}
workloads: []
"""
PROBE = """
import asyncio, sys
from pathlib import Path
import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from sidemesh.agent.certificates import request_certificate

async def main(ca_url, token_file, bundle, xds, node, mode):
    cert = await request_certificate(ca_url, Path(token_file).read_text().strip(), Path(bundle))
    if mode == "tls":
        credentials = grpc.ssl_channel_credentials(
            root_certificates=cert.trust_bundle_pem, private_key=cert.key_pem,
            certificate_chain=cert.chain_pem)
        channel = grpc.aio.secure_channel(xds, credentials)
    else:
        channel = grpc.aio.insecure_channel(xds)
    stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    request = discovery_pb2.DiscoveryRequest(
        node=base_pb2.Node(id=node), type_url="type.googleapis.com/envoy.config.cluster.v3.Cluster")
    try:
        async for reply in stub.StreamAggregatedResources(iter([request]), timeout=5):
            print("SERVED", len(reply.resources))
            break
    except grpc.aio.AioRpcError as exc:
        print("REFUSED", exc.code().name, exc.details())

asyncio.run(main(*sys.argv[1:]))
"""


class Hosts(Started):
    def __init__(self, made: Node, tmp_path: Path, etcd_url: str) -> None:
        super().__init__(tmp_path)
        self.made = made
        self.tmp_path = tmp_path
        self.state_dir = tmp_path / "state"
        self.etcd_url = etcd_url

    @property
    def node(self) -> Namespace:
        return self.made.node

    def host(self, short: str) -> Namespace:
        return next(p for p in self.made.pods if p.name.endswith(f"-{short}"))

    def sidemesh(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "sidemesh", *args]

    def control_plane(self) -> None:
        mesh = self.tmp_path / "mesh.yaml"
        mesh.write_text(MESH)
        applied = self.node.run(*self.sidemesh("apply", "-f", str(mesh), "--etcd", self.etcd_url))
        assert applied.returncode == 0, applied.stderr
        address = self.node.address
        # Two replicas over the same etcd and the same CA directory (0600 files).
        self.replicas = [
            self.start(
                self.node.command(
                    *self.sidemesh(
                        "controlplane", "--etcd", self.etcd_url, "--state-dir", str(self.state_dir),
                        "--xds-host", address, "--xds-port", str(xds),
                        "--api-host", address, "--api-port", str(api), "--ca-port", str(ca),
                        "--telemetry-interval", "0",
                    )
                ),
                f"controlplane-{i}",
            )
            for i, (xds, ca, api) in enumerate(REPLICAS)
        ]  # fmt: skip
        for i in range(len(REPLICAS)):
            self.until(lambda i=i: self.state(i) is not None)  # type: ignore[misc]

    def workload(
        self, short: str, name: str, service: str, port: int, zone: str, outbound: int = 15001
    ) -> None:
        host = self.host(short)
        app_port = port + 10000
        self.start(
            host.command(sys.executable, "-c", HTTP_SERVER, "127.0.0.1", str(app_port), name),
            f"app-{name}",
        )
        self.start(
            host.command(
                *self.sidemesh(
                    "sidecar", "--workload", name, "--service", service,
                    "--control-plane", ",".join(f"{self.node.address}:{x}" for x, _, _ in REPLICAS),
                    "--ca-address", ",".join(f"{self.node.address}:{c}" for _, c, _ in REPLICAS),
                    "--state-dir", str(self.state_dir), "--socket-dir", str(self.tmp_path / f"s-{name}"),
                    "--workdir", str(self.tmp_path / name), "--drain-seconds", "0", "--concurrency", "1",
                    "--register-etcd", self.etcd_url, "--address", host.address,
                    "--port", str(port), "--app-port", str(app_port),
                    "--outbound-port", str(outbound),
                    "--lease-ttl", str(LEASE_TTL_S), "--label", f"host={short}",
                    "--label", "topology.kubernetes.io/region=r1",
                    "--label", f"topology.kubernetes.io/zone={zone}",
                    *(("--calls", "b") if service == "a" else ()),
                )
            ),
            f"sidecar-{name}",
        )  # fmt: skip

    def admin(self, name: str) -> Path:
        return self.tmp_path / f"s-{name}" / "admin.sock"

    def ready(self, name: str) -> bool:
        try:
            return admin_get(self.admin(name), "/ready").text.strip() == "LIVE"
        except Exception:
            return False

    def state(self, replica: int = 0) -> dict[str, Any] | None:
        return self.api(replica, "/v1/state")

    def api(self, replica: int, path: str) -> Any:
        url = f"http://{self.node.address}:{REPLICAS[replica][2]}{path}"
        done = self.node.run(
            sys.executable, "-c",
            "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())",
            url,
        )  # fmt: skip
        return json.loads(done.stdout) if done.returncode == 0 else None

    def endpoints(self, caller: str, cluster: str) -> set[str]:
        """The addresses ``caller``'s Envoy holds for ``cluster``."""
        text = admin_get(self.admin(caller), "/clusters").text
        return {
            line.split("::")[1].rsplit(":", 1)[0]
            for line in text.splitlines()
            if line.startswith(f"{cluster}::") and line.count("::") >= 3 and "::cx_total::" in line
        }

    def call(self, short: str, count: int, pause: float = 0.0) -> list[dict[str, Any]]:
        done = self.host(short).run(
            sys.executable, "-c", HTTP_CLIENT, "http://b/", "", "http://127.0.0.1:15001",
            str(count), str(pause), timeout=count * 6 + 10,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        results: list[dict[str, Any]] = json.loads(done.stdout)
        return results

    def until(self, check: Callable[[], bool], timeout: float = 60) -> float:
        start = time.monotonic()
        while not check():
            if time.monotonic() - start > timeout:
                pytest.fail(f"never happened:\n{self.logs()}")
            time.sleep(0.1)
        return time.monotonic() - start


@contextmanager
def _mesh(tmp_path: Path, etcd_on_hosts: bool) -> Iterator[tuple[Hosts, EtcdCluster]]:
    """Three hosts with b-1, b-2 and a caller a-1; etcd in the node namespace, or one
    member on each host."""
    with node(f"m{os.getpid() % 100000}", ["h1", "h2", "h3"]) as made:
        where = made.pods if etcd_on_hosts else [made.node]
        etcd = EtcdCluster.of(tmp_path / "etcd", [(ns.address, ns.command()) for ns in where])
        for member in etcd.members:
            member.client_port, member.peer_port = ETCD, ETCD + 1
        running = Hosts(made, tmp_path, etcd.endpoints)
        try:
            etcd.start()
            running.control_plane()
            # b-1 shares the caller's zone; b-2 is in the other zone of the region.
            running.workload("h1", "b-1", "b", 9080, "zone-a")
            running.workload("h2", "b-2", "b", 9080, "zone-b")
            running.workload("h3", "a-1", "a", 8080, "zone-a")
            for name in ("b-1", "b-2", "a-1"):
                running.until(lambda name=name: running.ready(name))  # type: ignore[misc]
            yield running, etcd
        finally:
            running.stop()
            etcd.stop()


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    with _mesh(tmp_path, etcd_on_hosts=False) as (running, _):
        yield running


def test_workloads_on_other_hosts_are_called_by_name_over_mtls_in_the_callers_zone_first(
    hosts: Hosts,
) -> None:
    hosts.until(lambda: hosts.endpoints("a-1", "outbound|9080||b.default") == {
        hosts.host("h1").address, hosts.host("h2").address})  # fmt: skip
    results = hosts.call("h3", 40)
    assert [r["status"] for r in results] == [200] * 40, results
    # Both are healthy: every call stays in the caller's zone.
    assert {r["workload"] for r in results} == {"b-1"}
    text = admin_get(
        hosts.admin("a-1"), "/stats", {"filter": "outbound\\|9080\\|\\|b.default.ssl.handshake"}
    ).text
    assert int(text.split(": ")[-1]) >= 1, text


def test_a_host_taken_away_leaves_every_proxy_within_the_lease_ttl(hosts: Hosts) -> None:
    b1 = hosts.host("h1").address
    hosts.until(lambda: b1 in hosts.endpoints("a-1", "outbound|9080||b.default"))
    caller = subprocess.Popen(
        hosts.host("h3").command(
            sys.executable,
            "-c",
            HTTP_CLIENT,
            "http://b/",
            "",
            "http://127.0.0.1:15001",
            "150",
            "0.05",
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    # The host's cable is pulled: nothing from it, no goodbye.
    subprocess.run(hosts.node.command("ip", "link", "set", "v0n", "down"), check=True, timeout=10)
    gone = hosts.until(lambda: b1 not in hosts.endpoints("a-1", "outbound|9080||b.default"), 30)
    assert gone <= LEASE_TTL_S + 2, f"left after {gone:.1f}s"
    out, _ = caller.communicate(timeout=120)
    results = json.loads(out)
    ok = sum(1 for r in results if r["status"] == 200)
    print(f"host gone: endpoints left after {gone:.1f}s; {ok}/{len(results)} calls succeeded")
    # The caller's zone is empty now: its calls failed over to the other zone.
    assert results[-1]["workload"] == "b-2"
    assert ok / len(results) >= 0.99, [r for r in results if r["status"] != 200]


def test_a_certificate_cannot_ask_for_another_workloads_config_nor_plaintext_xds(
    hosts: Hosts,
) -> None:
    h1 = hosts.host("h1")
    token = hosts.state_dir / "tokens" / "b-1.default.token"
    bundle = hosts.state_dir / "ca" / "root-cert.pem"
    ca_url = f"https://{hosts.node.address}:{CA}"
    xds = f"{hosts.node.address}:{XDS}"

    def probe(node_id: str, mode: str) -> str:
        done = h1.run(
            sys.executable, "-c", PROBE, ca_url, str(token), str(bundle), xds, node_id, mode
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert probe("sidecar~b-1~default", "tls").startswith("SERVED")
    refused = probe("sidecar~a-1~default", "tls")
    assert refused.startswith("REFUSED PERMISSION_DENIED"), refused
    assert "sidecar~a-1~default is spiffe://test.local/ns/default/sa/a" in refused
    assert "spiffe://test.local/ns/default/sa/b" in refused
    logs = "".join(p.read_text() for p in hosts.tmp_path.glob("controlplane-*.log"))
    assert "refused an xDS stream" in logs
    plaintext = probe("sidecar~b-1~default", "plaintext")
    assert plaintext.startswith("REFUSED UNAVAILABLE"), plaintext


def _serving(hosts: Hosts, replica: int, node_id: str) -> bool:
    proxies = hosts.api(replica, "/v1/proxies") or {"proxies": []}
    return any(p["node"] == node_id for p in proxies["proxies"])


def test_a_killed_control_plane_replica_is_replaced_by_the_other_without_failed_calls(
    hosts: Hosts,
) -> None:
    node_id = "sidecar~a-1~default"
    hosts.until(lambda: _serving(hosts, 0, node_id) or _serving(hosts, 1, node_id))
    used = 0 if _serving(hosts, 0, node_id) else 1
    other = 1 - used
    caller = subprocess.Popen(
        hosts.host("h3").command(
            sys.executable,
            "-c",
            HTTP_CLIENT,
            "http://b/",
            "",
            "http://127.0.0.1:15001",
            "200",
            "0.02",
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    hosts.replicas[used].kill()
    moved = hosts.until(lambda: _serving(hosts, other, node_id), 30)
    assert moved <= 5, f"moved to the other replica after {moved:.1f}s"
    out, _ = caller.communicate(timeout=120)
    results = json.loads(out)
    ok = sum(1 for r in results if r["status"] == 200)
    print(f"replica killed: moved after {moved:.1f}s; {ok}/{len(results)} calls succeeded")
    assert ok / len(results) >= 0.999, [r for r in results if r["status"] != 200]
    # A change made afterwards reaches the sidecar, from the replica left.
    (hosts.tmp_path / "route.yaml").write_text(MESH + ROUTE)
    applied = hosts.node.run(
        *hosts.sidemesh("apply", "-f", str(hosts.tmp_path / "route.yaml"), "--etcd", hosts.etcd_url)
    )
    assert applied.returncode == 0, applied.stderr
    arrived = hosts.until(
        lambda: "b-to-b2" in admin_get(hosts.admin("a-1"), "/config_dump").text, 15
    )
    print(f"an applied route reached the sidecar {arrived:.2f}s after apply returned")
    assert arrived <= 1.0
    assert {r["workload"] for r in hosts.call("h3", 10)} == {"b-2"}


ROUTE = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b-to-b2}
spec:
  parentRefs: [{group: "", kind: Service, name: b, port: 9080}]
  rules: [{backendRefs: [{name: b-2-only, port: 9080}]}]
---
"""


def test_losing_one_of_three_etcd_members_fails_no_call_and_registration_goes_on(
    tmp_path: Path,
) -> None:
    with _mesh(tmp_path, etcd_on_hosts=True) as (hosts, etcd):
        caller = subprocess.Popen(
            hosts.host("h3").command(
                sys.executable,
                "-c",
                HTTP_CLIENT,
                "http://b/",
                "",
                "http://127.0.0.1:15001",
                "100",
                "0.05",
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        etcd.members[0].stop(signal.SIGKILL)  # the first endpoint everyone was given
        hosts.workload("h2", "b-3", "b", 9081, "zone-b", outbound=15002)  # beside b-2
        joined = hosts.until(
            lambda: any(w["name"] == "b-3" for w in (hosts.state(0) or {}).get("workloads", [])), 30
        )
        out, _ = caller.communicate(timeout=120)
        results = json.loads(out)
        print(f"etcd member lost: b-3 registered {joined:.1f}s later; {len(results)} calls")
        assert [r for r in results if r["status"] != 200] == []
