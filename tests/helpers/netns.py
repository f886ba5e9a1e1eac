"""Hosts made of Linux network namespaces, for tests that need more than one address
or real iptables: a "node" namespace with a bridge, and "pods" (namespaces) plugged
into it with a veth each. Everything lives in namespaces the test makes and removes;
no address or rule touches the machine's own network."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field


def can_make_namespaces() -> str | None:
    """None if this process can make network namespaces with iptables in them, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables)"
    for tool in ("ip", "iptables-restore", "setpriv"):
        if shutil.which(tool) is None:
            return f"needs {tool} (make test installs it)"
    return None


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Namespace:
    name: str
    address: str

    def command(self, *args: str, uid: int | None = None) -> list[str]:
        """``args`` run inside the namespace (as ``uid``, its group the same, no others)."""
        prefix = ["ip", "netns", "exec", self.name]
        if uid is not None:
            prefix += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
        return [*prefix, *args]

    def run(
        self, *args: str, uid: int | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args, uid=uid), capture_output=True, text=True, timeout=timeout
        )


@dataclass
class Node:
    """A bridge in its own namespace (``node``, at ``<prefix>.1``) and the pods on it."""

    tag: str
    prefix: str = "10.231.0"
    node: Namespace = field(init=False)
    pods: list[Namespace] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.node = Namespace(f"smn-{self.tag}", f"{self.prefix}.1")

    def create(self) -> None:
        _run("ip", "netns", "add", self.node.name)
        self._in_node("ip", "link", "set", "lo", "up")
        self._in_node("ip", "link", "add", "br0", "type", "bridge")
        self._in_node("ip", "addr", "add", f"{self.node.address}/24", "dev", "br0")
        self._in_node("ip", "link", "set", "br0", "up")

    def add_pod(self, short: str) -> Namespace:
        pod = Namespace(f"smp-{self.tag}-{short}", f"{self.prefix}.{len(self.pods) + 2}")
        _run("ip", "netns", "add", pod.name)
        host_end, pod_end = f"v{len(self.pods)}n", "eth0"
        self._in_node(
            "ip",
            "link",
            "add",
            host_end,
            "type",
            "veth",
            "peer",
            "name",
            pod_end,
            "netns",
            pod.name,
        )
        self._in_node("ip", "link", "set", host_end, "master", "br0")
        self._in_node("ip", "link", "set", host_end, "up")
        for args in (
            ("ip", "link", "set", "lo", "up"),
            ("ip", "addr", "add", f"{pod.address}/24", "dev", pod_end),
            ("ip", "link", "set", pod_end, "up"),
        ):
            _run("ip", "netns", "exec", pod.name, *args)
        self.pods.append(pod)
        return pod

    def _in_node(self, *args: str) -> None:
        _run("ip", "netns", "exec", self.node.name, *args)

    def delete(self) -> None:
        for ns in [*self.pods, self.node]:
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, timeout=30)


@contextmanager
def node(tag: str, pods: Sequence[str]) -> Iterator[Node]:
    made = Node(tag)
    try:
        made.create()
        for short in pods:
            made.add_pod(short)
        yield made
    finally:
        made.delete()


HTTP_SERVER = """
import http.server, json, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"workload": sys.argv[3], "path": self.path,
                           "xfcc": self.headers.get("x-forwarded-client-cert", "")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""
"""An app: ``python -c HTTP_SERVER ADDRESS PORT NAME`` answers JSON with its name, the
path and the caller identity its sidecar passed on."""

HTTP_CLIENT = """
import json, sys, time, urllib.request
url, host, proxy, count, pause = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
handlers = [urllib.request.ProxyHandler({"http": proxy} if proxy else {})]
opener = urllib.request.build_opener(*handlers)
results = []
for _ in range(count):
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with opener.open(request, timeout=5) as reply:
            results.append({"status": reply.status, "workload": json.loads(reply.read())["workload"]})
    except Exception as exc:
        results.append({"status": getattr(exc, "code", 0), "error": str(exc)})
    time.sleep(pause)
print(json.dumps(results))
"""
"""A caller: ``python -c HTTP_CLIENT URL HOST PROXY COUNT PAUSE`` makes COUNT requests
(through PROXY if not empty, with Host HOST if not empty) and prints each outcome."""
