"""An HTTP app for local-mode tests: GET / sends one line to the TCP service named by
$TARGET through the sidecar port in $SIDEMESH_UPSTREAM_<TARGET>, and returns the reply."""

import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TARGET = os.environ["SIDEMESH_UPSTREAM_" + os.environ["TARGET"].upper()]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        host, port = TARGET.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(b"hello\n")
            reply = conn.makefile("rb").readline()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
