"""A TCP app for local-mode tests: echoes each line back, prefixed with its name."""

import os
import socketserver


class Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(os.environ["SIDEMESH_WORKLOAD"].encode() + b": " + line)


socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("127.0.0.1", int(os.environ["PORT"])), Echo).serve_forever()
