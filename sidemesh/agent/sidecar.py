"""Run one sidecar: write its bootstrap, start Envoy, forward signals, exit as Envoy did."""

from __future__ import annotations

import ctypes
import json
import logging
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType

from sidemesh.agent.envoy_binary import find_envoy
from sidemesh.envoy.bootstrap import BootstrapParams, bootstrap, to_json

log = logging.getLogger(__name__)

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def write_bootstrap(params: BootstrapParams, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{params.proxy.workload}.{params.proxy.namespace}.bootstrap.json"
    path.write_text(json.dumps(to_json(bootstrap(params)), indent=2))
    return path


def envoy_command(bootstrap_path: Path, log_level: str = "info") -> list[str]:
    return [
        str(find_envoy()),
        "-c",
        str(bootstrap_path),
        "-l",
        log_level,
        # Many sidecars share one host in local mode; hot restart's shared memory
        # would make the second one fail to start.
        "--disable-hot-restart",
    ]


def run_sidecar(
    params: BootstrapParams, workdir: Path | None = None, log_level: str = "info"
) -> int:
    """Run Envoy in the foreground until it exits; returns the status to exit with
    (Envoy's own, or 128 + the signal that ended it)."""
    directory = workdir or Path(tempfile.mkdtemp(prefix="sidemesh-sidecar-"))
    path = write_bootstrap(params, directory)
    command = envoy_command(path, log_level)
    log.info(
        "starting Envoy for %s: admin http://127.0.0.1:%d, control plane %s:%d",
        params.proxy,
        params.admin_port,
        params.control_plane_host,
        params.control_plane_port,
    )
    child = subprocess.Popen(command, preexec_fn=_envoy_child_setup)

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def _envoy_child_setup() -> None:
    """In the forked child, before exec: Envoy gets a clean signal mask, and the
    kernel sends it SIGTERM if this agent dies, even by SIGKILL, so no Envoy is
    ever left running without its agent."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1

__all__ = ["envoy_command", "run_sidecar", "write_bootstrap"]
