"""Run the two-service example: a control plane, and for each workload its app and
its sidecar. Prints what to try; Ctrl-C stops everything.

Usage: python examples/two-services/demo.py   (or: make demo)
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
MESH = HERE / "mesh.yaml"
ECHO_APP = HERE.parent / "echo_app.py"
API = "http://127.0.0.1:15014"


def main() -> int:
    mesh = yaml.safe_load(MESH.read_text())
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> None:
        processes.append(subprocess.Popen([sys.executable, *args]))

    try:
        print(f"starting the control plane on {MESH.relative_to(Path.cwd())} ...", flush=True)
        start("-m", "sidemesh", "controlplane", "-f", str(MESH))
        _wait_for(f"{API}/healthz", "the control plane")
        for workload in mesh["workloads"]:
            name = workload["name"]
            print(f"starting {name}: app on :{workload['appPort']}, sidecar", flush=True)
            start(str(ECHO_APP), name, str(workload["appPort"]))
            start(
                "-m", "sidemesh", "sidecar", "-w", name, "--service", workload["service"],
                "--admin-port", str(workload["sidecar"]["adminPort"]), "--log-level", "warning",
            )  # fmt: skip
        frontend = mesh["workloads"][0]["sidecar"]["outboundPort"]
        _wait_for(f"http://127.0.0.1:{frontend}/", "a route to backend", host="backend")
        print(
            "\nsidemesh demo is up. Try:\n"
            f"  curl -H 'Host: backend' http://127.0.0.1:{frontend}/hello   "
            "# frontend-1's sidecar → backend-1\n"
            f"  curl -x http://127.0.0.1:{frontend} http://backend:9080/hello   "
            "# the same, as an HTTP proxy\n"
            f"  curl {API}/v1/proxies   # what each sidecar was sent and ACKed\n"
            f"  curl {API}/v1/state     # the mesh as the control plane sees it\n"
            "Edit examples/two-services/mesh.yaml and watch the control plane reload it.\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        print("sidemesh demo stopped.", flush=True)
    return 0


def _wait_for(url: str, what: str, host: str | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"demo: {what} did not come up within {timeout:.0f}s")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
