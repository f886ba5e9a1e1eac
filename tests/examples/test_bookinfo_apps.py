"""The bookinfo example apps (examples/bookinfo) as real processes on 127.0.0.1, wired
together without a mesh: a small forward HTTP proxy in the test stands in for the
sidecars (each app gets it as HTTP_PROXY) and sends ``http://<service>:9080/...`` to the
port where that service's process listens."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.helpers.net import free_port

ROOT = Path(__file__).resolve().parents[2]
BOOKINFO = ROOT / "examples" / "bookinfo"
START_TIMEOUT = 10.0  # seconds for an app to answer /healthz
HTTP_TIMEOUT = 5.0  # seconds for any one HTTP exchange
STOP_TIMEOUT = 5.0  # seconds for a process to exit
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
HOP_BY_HOP = {"connection", "proxy-connection", "keep-alive", "proxy-authorization", "te"}


@dataclass
class Forwarded:
    """One request the proxy saw."""

    service: str
    path: str
    headers: dict[str, str]


class ForwardProxy:
    """A forward HTTP proxy: an absolute-form ``GET http://reviews:9080/...`` goes to
    127.0.0.1 at the port registered for "reviews"; 502 if none, or nothing listens."""

    def __init__(self) -> None:
        self.routes: dict[str, int] = {}
        self.seen: list[Forwarded] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                target = urlsplit(self.path)
                service = target.hostname or ""
                headers = {
                    name.lower(): value
                    for name, value in self.headers.items()
                    if name.lower() not in HOP_BY_HOP
                }
                with proxy._lock:
                    proxy.seen.append(Forwarded(service, target.path, headers))
                    port = proxy.routes.get(service)
                if port is None:
                    self._reply(502, "text/plain", f"unknown service {service!r}".encode())
                    return
                path = target.path or "/"
                if target.query:
                    path += "?" + target.query
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
                try:
                    connection.request("GET", path, headers=headers)
                    response = connection.getresponse()
                    body = response.read()
                    content_type = response.getheader("Content-Type", "application/octet-stream")
                    self._reply(response.status, content_type, body)
                except OSError as exc:
                    self._reply(502, "text/plain", f"{service}: {exc}".encode())
                finally:
                    connection.close()

            def _reply(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def requests_with(self, header: str, value: str) -> list[Forwarded]:
        with self._lock:
            return [seen for seen in self.seen if seen.headers.get(header) == value]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=STOP_TIMEOUT)


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """GET straight to 127.0.0.1 (never through a proxy): (status, body)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def fetch_json(url: str, headers: dict[str, str] | None = None) -> Any:
    status, body = fetch(url, headers)
    assert status == 200, body
    return json.loads(body)


class Bookinfo:
    """Bookinfo apps as subprocesses, each reaching the others through one ForwardProxy."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.proxy = ForwardProxy()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def start(self, app: str, workload: str, version: str = "v1", routed: bool = True) -> int:
        """Start examples/bookinfo/<app>.py as ``workload``; when ``routed``, the proxy
        sends service ``app`` to it. Returns its port once it answers /healthz."""
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES}
        env |= {
            "PORT": str(port),
            "VERSION": version,
            "SIDEMESH_WORKLOAD": workload,
            "HTTP_PROXY": self.proxy.url,
            "http_proxy": self.proxy.url,
        }
        log_path = self.log_dir / f"{workload}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, str(BOOKINFO / f"{app}.py")],
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes[workload] = process
        self.ports[workload] = port
        self._wait_healthy(workload, process, port, log_path)
        if routed:
            self.proxy.routes[app] = port
        return port

    def _wait_healthy(
        self, workload: str, process: subprocess.Popen[bytes], port: int, log_path: Path
    ) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"{workload} exited ({process.returncode}):\n{log_path.read_text()}")
            try:
                if fetch(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail(f"{workload} not healthy in {START_TIMEOUT}s:\n{log_path.read_text()}")

    def url(self, workload: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[workload]}{path}"

    def kill(self, workload: str) -> None:
        """SIGKILL a workload and wait for it to be gone (its route stays: calls to it
        now fail to connect, as they would to a crashed pod)."""
        process = self.processes[workload]
        process.kill()
        process.wait(timeout=STOP_TIMEOUT)

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
        self.proxy.close()


@contextmanager
def running_bookinfo(log_dir: Path) -> Iterator[Bookinfo]:
    bookinfo = Bookinfo(log_dir)
    try:
        yield bookinfo
    finally:
        bookinfo.close()


@pytest.fixture(scope="module")
def bookinfo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bookinfo]:
    """The whole app with reviews v3 behind "reviews"; reviews v1 and v2 run too, reachable
    only directly. Tests using it must not change it."""
    with running_bookinfo(tmp_path_factory.mktemp("bookinfo")) as apps:
        apps.start("ratings", "ratings-1")
        apps.start("details", "details-1")
        apps.start("reviews", "reviews-v3-1", version="v3")
        apps.start("reviews", "reviews-v1-1", version="v1", routed=False)
        apps.start("reviews", "reviews-v2-1", version="v2", routed=False)
        apps.start("productpage", "productpage-1")
        yield apps


def test_every_app_answers_healthz(bookinfo: Bookinfo) -> None:
    for workload in bookinfo.processes:
        answer = fetch_json(bookinfo.url(workload, "/healthz"))
        assert answer["status"] == "ok"
        assert answer["workload"] == workload


def test_details_and_ratings_answer_json(bookinfo: Bookinfo) -> None:
    details = fetch_json(bookinfo.url("details-1", "/details/0"))
    assert details["author"] == "William Shakespeare"
    assert details["ISBN-13"] == "123-1234567890"
    assert details["workload"] == "details-1"
    ratings = fetch_json(bookinfo.url("ratings-1", "/ratings/0"))
    assert ratings == {
        "id": 0,
        "ratings": {"Reviewer1": 5, "Reviewer2": 4},
        "workload": "ratings-1",
    }


def test_unknown_path_is_404(bookinfo: Bookinfo) -> None:
    status, body = fetch(bookinfo.url("details-1", "/nope"))
    assert status == 404
    assert "/nope" in body


def test_productpage_shows_details_and_red_stars_from_reviews_v3(bookinfo: Bookinfo) -> None:
    status, page = fetch(bookinfo.url("productpage-1", "/productpage"))
    assert status == 200
    assert "<title>The Comedy of Errors</title>" in page
    assert "<dd>William Shakespeare</dd>" in page
    assert "123-1234567890" in page
    assert "details served by details-1" in page
    assert '<p class="stars" style="color: red">★★★★★</p>' in page
    assert '<p class="stars" style="color: red">★★★★</p>' in page
    assert "reviews served by reviews-v3-1 (v3)" in page
    assert "productpage served by productpage-1" in page
    assert "Sorry" not in page


def test_products_api_answers_details_and_reviews(bookinfo: Bookinfo) -> None:
    product = fetch_json(bookinfo.url("productpage-1", "/api/v1/products/0"))
    assert product["details"]["publisher"] == "PublisherA"
    assert product["reviews"]["version"] == "v3"
    assert product["reviews"]["workload"] == "reviews-v3-1"
    ratings = [review["rating"] for review in product["reviews"]["reviews"]]
    assert ratings == [{"stars": 5, "color": "red"}, {"stars": 4, "color": "red"}]


def test_reviews_v1_has_no_rating_and_never_calls_ratings(bookinfo: Bookinfo) -> None:
    request_id = str(uuid.uuid4())
    answer = fetch_json(bookinfo.url("reviews-v1-1", "/reviews/0"), {"x-request-id": request_id})
    assert answer["version"] == "v1"
    assert answer["workload"] == "reviews-v1-1"
    assert [review["reviewer"] for review in answer["reviews"]] == ["Reviewer1", "Reviewer2"]
    assert all("rating" not in review for review in answer["reviews"])
    assert bookinfo.proxy.requests_with("x-request-id", request_id) == []


def test_reviews_v2_has_black_stars(bookinfo: Bookinfo) -> None:
    answer = fetch_json(bookinfo.url("reviews-v2-1", "/reviews/0"))
    assert answer["version"] == "v2"
    ratings = [review["rating"] for review in answer["reviews"]]
    assert ratings == [{"stars": 5, "color": "black"}, {"stars": 4, "color": "black"}]


def test_trace_headers_go_along_on_every_call(bookinfo: Bookinfo) -> None:
    request_id = str(uuid.uuid4())
    trace = {
        "x-request-id": request_id,
        "traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01",
        "tracestate": "sidemesh=test",
    }
    status, _ = fetch(bookinfo.url("productpage-1", "/productpage"), trace)
    assert status == 200
    calls = bookinfo.proxy.requests_with("x-request-id", request_id)
    assert sorted((call.service, call.path) for call in calls) == [
        ("details", "/details/0"),
        ("ratings", "/ratings/0"),
        ("reviews", "/reviews/0"),
    ]
    for call in calls:
        assert {name: call.headers.get(name) for name in trace} == trace


def test_ratings_down_reviews_v3_reports_it_and_productpage_still_renders(
    tmp_path: Path,
) -> None:
    with running_bookinfo(tmp_path) as apps:
        apps.start("ratings", "ratings-1")
        apps.start("details", "details-1")
        apps.start("reviews", "reviews-v3-1", version="v3")
        apps.start("productpage", "productpage-1")
        apps.kill("ratings-1")

        answer = fetch_json(apps.url("reviews-v3-1", "/reviews/0"))
        assert [review["rating"] for review in answer["reviews"]] == [
            {"error": "ratings unavailable"},
            {"error": "ratings unavailable"},
        ]
        status, page = fetch(apps.url("productpage-1", "/productpage"))
        assert status == 200
        assert "Ratings service is currently unavailable" in page
        assert "★" not in page
        assert "An extremely entertaining play by Shakespeare." in page
        assert "reviews served by reviews-v3-1 (v3)" in page
        assert "<dd>William Shakespeare</dd>" in page


def test_details_down_productpage_says_sorry_and_still_shows_reviews(tmp_path: Path) -> None:
    with running_bookinfo(tmp_path) as apps:
        apps.start("details", "details-1")
        apps.start("reviews", "reviews-v1-1", version="v1")
        apps.start("productpage", "productpage-1")
        apps.kill("details-1")

        status, page = fetch(apps.url("productpage-1", "/productpage"))
        assert status == 200
        assert "Sorry, product details are currently unavailable" in page
        assert "123-1234567890" not in page
        assert "reviews served by reviews-v1-1 (v1)" in page
        product = fetch_json(apps.url("productpage-1", "/api/v1/products/0"))
        assert "error" in product["details"]
        assert product["reviews"]["workload"] == "reviews-v1-1"


def test_productpage_alone_says_sorry_for_both(tmp_path: Path) -> None:
    with running_bookinfo(tmp_path) as apps:
        apps.start("productpage", "productpage-1")

        status, page = fetch(apps.url("productpage-1", "/productpage"))
        assert status == 200
        assert "<title>The Comedy of Errors</title>" in page
        assert "Sorry, product details are currently unavailable" in page
        assert "Sorry, product reviews are currently unavailable" in page
