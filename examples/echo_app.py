"""A tiny HTTP app for trying the mesh: answers every GET with its name, the request
it saw, and the caller's identity as its sidecar verified it
(x-forwarded-client-cert). Usage: python examples/echo_app.py NAME PORT"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    name, port = sys.argv[1], int(sys.argv[2])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = {"workload": name, "path": self.path, "host": self.headers.get("Host")}
            # Set by this workload's sidecar from the caller's verified certificate.
            caller = self.headers.get("X-Forwarded-Client-Cert")
            if caller:
                answer["xfcc"] = caller
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
