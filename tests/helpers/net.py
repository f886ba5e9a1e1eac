"""Loopback ports and a small HTTP backend that says which workload answered."""

from __future__ import annotations

import json
import os
import random
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

_handed_out: set[int] = set()
_random = random.Random()
TEST_PORTS = range(20000, 32768)
"""Below Linux's ephemeral range (32768-60999): a port handed out here and bound a
moment later cannot meanwhile become the local port of some outgoing connection
(an Envoy's to its upstream), as a port the kernel picked from the ephemeral range can."""


def _ports_of_this_worker() -> range:
    """TEST_PORTS, or this pytest-xdist worker's share of them: workers run side by
    side and must not hand out the same port."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count <= 1:
        return TEST_PORTS
    index = int(worker[2:])
    share = len(TEST_PORTS) // count
    start = TEST_PORTS.start + index * share
    return range(start, start + share)


def free_port() -> int:
    """A port free on 127.0.0.1 now, never handed out twice in one test run."""
    ports = _ports_of_this_worker()
    while True:
        port = _random.choice(ports)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


def wait_listening(port: int, timeout: float = 20) -> None:
    """Until something accepts connections on 127.0.0.1:``port``. An Envoy ACKs a
    listener before it starts accepting on it (it warms first: its certificate
    arrives over SDS), so a synced sidecar may still refuse a moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing accepts on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def admin_get(
    socket_path: str | Path, path: str, params: dict[str, str] | None = None, timeout: float = 5
) -> httpx.Response:
    """``GET path`` of an Envoy admin, which listens on a Unix socket (never on TCP)."""
    transport = httpx.HTTPTransport(uds=str(socket_path))
    with httpx.Client(transport=transport, timeout=timeout, trust_env=False) as client:
        return client.get(f"http://envoy{path}", params=params)


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (from /proc/net/tcp)."""
    return {address for address, bound, _ in _listening_sockets() if bound == port}


def listening_ports_of(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process ``pid`` listens on: its sockets'
    inodes (from /proc/PID/fd) looked up in /proc/net/tcp{,6}."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return {(address, port) for address, port, inode in _listening_sockets() if inode in inodes}


def _listening_sockets() -> Iterator[tuple[str, int, str]]:
    """(address, port, inode) of every listening TCP socket of this host."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":
                address, port_hex = fields[1].rsplit(":", 1)
                yield _decode_address(address), int(port_hex, 16), fields[9]


def _decode_address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A caller that went away mid-answer (a sidecar killed on purpose) is no
        error of the app's; anything else is printed as usual."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _QuietUnixServer(socketserver.ThreadingUnixStreamServer):
    """An HTTP server on a Unix socket (an Envoy admin's stand-in)."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@contextmanager
def backend(
    name: str,
    port: int | Path,
    delay_s: float = 0.0,
    status: int = 200,
    seen: list[dict[str, str]] | None = None,
    address: str = "127.0.0.1",
    tls: ssl.SSLContext | None = None,
) -> Iterator[None]:
    """An HTTP app on address:port answering JSON with its name and the Host it saw,
    ``delay_s`` after it read the request (so that requests are in flight), with
    ``status``; ``seen`` collects each request's path and headers. ``tls``: serve
    HTTPS with this context (a server outside the mesh, say). A ``port`` that is a path
    serves on that Unix socket instead."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if seen is not None:
                seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            if delay_s:
                time.sleep(delay_s)
            answer = {"workload": name, "host": self.headers.get("Host"), "path": self.path}
            xfcc = self.headers.get("X-Forwarded-Client-Cert")
            if xfcc is not None:
                answer["xfcc"] = xfcc
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server: _QuietServer | _QuietUnixServer
    if isinstance(port, Path):
        server = _QuietUnixServer(str(port), Handler)
    else:
        server = _QuietServer((address, port), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
