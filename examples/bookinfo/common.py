"""Helpers shared by the bookinfo apps: a tiny GET-only HTTP server and a JSON client.

Each app is a plain process on 127.0.0.1:$PORT. The mesh sets $SIDEMESH_WORKLOAD (shown
in responses, so routing is visible), $VERSION, and $HTTP_PROXY / $http_proxy (the
app's sidecar). Calls to other services are plain ``http://<service>:9080/...`` URLs made
with urllib, which honours the proxy variables by itself; without a proxy the service
name does not resolve, and ``call_json`` reports that as an error instead of raising.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

# (status, content type, body)
Response = tuple[int, str, bytes]
# Called for every GET but /healthz with the request path (no query) and its headers
# (names in lower case).
HandlerFn = Callable[[str, Mapping[str, str]], Response]

# Forwarded from an incoming request to the calls it makes, so a trace can join them.
TRACE_HEADERS = ("x-request-id", "traceparent", "tracestate", "end-user")
"""Carried from a request to the calls it causes: tracing context, and the signed-in
user, which the demo's routes match on (``end-user: jason`` → reviews v2)."""


def workload() -> str:
    """This workload's name as the mesh gave it, or "local" when run by hand."""
    return os.environ.get("SIDEMESH_WORKLOAD", "local")


def version() -> str:
    """This workload's version ($VERSION, "v1" if unset)."""
    return os.environ.get("VERSION", "v1")


def json_response(value: Any, status: int = 200) -> Response:
    return status, "application/json", json.dumps(value).encode()


def not_found(path: str) -> Response:
    return json_response({"error": f"no such path: {path}", "workload": workload()}, 404)


def trace_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The tracing headers of an incoming request (lower-case names), to send on the
    calls it causes."""
    found = {}
    for name in TRACE_HEADERS:
        value = headers.get(name)
        if value:
            found[name] = value
    return found


def call_json(
    url: str, timeout: float = 2.0, headers: Mapping[str, str] | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """GET ``url`` and decode a JSON object: ``(object, None)``, or ``(None, error)``."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        exc.close()
        return None, f"{url}: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:  # refused, unresolvable, timed out
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return None, f"{url}: {reason}"
    try:
        value = json.loads(body)
    except ValueError as exc:
        return None, f"{url}: invalid JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"{url}: expected a JSON object"
    return value, None


def serve(handler_fn: HandlerFn) -> None:
    """Serve GETs on 127.0.0.1:$PORT with ``handler_fn`` until interrupted."""
    port = int(os.environ.get("PORT", "9080"))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/healthz":
                status, content_type, body = json_response(
                    {"status": "ok", "workload": workload(), "version": version()}
                )
            else:
                try:
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    status, content_type, body = handler_fn(path, headers)
                except Exception as exc:  # an app bug answers 500, not a dropped connection
                    status, content_type, body = json_response(
                        {"error": f"{type(exc).__name__}: {exc}", "workload": workload()}, 500
                    )
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"{workload()} listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
