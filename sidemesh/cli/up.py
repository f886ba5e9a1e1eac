"""``sidemesh up`` and ``sidemesh down``: a whole mesh on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from sidemesh.controlplane import ControlPlane
from sidemesh.errors import ConfigError
from sidemesh.local.ports import StickyPorts
from sidemesh.local.runner import LocalMesh, LocalSettings
from sidemesh.model import MeshState
from sidemesh.settings import ControlPlaneSettings

EXIT_BAD_INPUT = 2
DETACHED_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class UpOptions:
    mesh_file: Path
    runtime_dir: Path
    xds_port: int
    api_port: int
    ca_port: int
    xds_mode: str

    @property
    def pid_file(self) -> Path:
        return self.runtime_dir / "up.pid"

    @property
    def ready_file(self) -> Path:
        return self.runtime_dir / "up.ready"

    @property
    def log_file(self) -> Path:
        return self.runtime_dir / "up.log"


def running_pid(runtime_dir: Path) -> int | None:
    """The pid of the ``sidemesh up`` that owns ``runtime_dir``, if it still runs."""
    try:
        pid = int((runtime_dir / "up.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def run_foreground(options: UpOptions, console: Console) -> int:
    return asyncio.run(_run(options, console))


async def _run(options: UpOptions, console: Console) -> int:
    other = running_pid(options.runtime_dir)
    if other is not None:
        console.print(
            f"[red]a mesh already runs from {options.runtime_dir} (pid {other})[/]: "
            "`sidemesh down` stops it"
        )
        return 1
    options.runtime_dir.mkdir(parents=True, exist_ok=True)
    options.ready_file.unlink(missing_ok=True)
    local: LocalMesh | None = None
    settings = ControlPlaneSettings(
        config=options.mesh_file,
        xds_port=options.xds_port,
        api_port=options.api_port,
        ca_port=options.ca_port,
        state_dir=options.runtime_dir / "controlplane",
    )
    control_plane = ControlPlane(
        settings,
        ports=StickyPorts(),
        local_status=lambda: local.status() if local is not None else [],
    )
    try:
        await control_plane.start()
    except ConfigError as exc:
        # Plain, unwrapped, on stderr: each line names the file, the field and the reason.
        print(f"{exc}\nnothing was started.", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        console.print(f"[red]cannot start the control plane:[/] {exc}")
        await control_plane.stop()
        return 1
    options.pid_file.write_text(str(os.getpid()))
    local = LocalMesh(
        LocalSettings(
            runtime_dir=options.runtime_dir,
            state_dir=settings.state_dir,
            workdir=options.mesh_file.resolve().parent,
            xds_address=f"127.0.0.1:{control_plane.xds_port}",
            ca_address=f"127.0.0.1:{control_plane.ca_port}",
            xds_mode=options.xds_mode,
        ),
        progress=console.print,
    )
    applying: set[asyncio.Task[None]] = set()

    def on_state(state: MeshState) -> None:
        assert local is not None
        task = asyncio.create_task(local.apply(state))
        applying.add(task)
        task.add_done_callback(applying.discard)

    control_plane.state_listeners.append(on_state)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        state = control_plane.publisher.state
        count = len(state.workloads) + len(state.gateways)
        console.print(
            f"starting {count} workloads and gateways from {options.mesh_file} "
            f"(logs in {options.runtime_dir / 'logs'}) ..."
        )
        await local.apply(state)
        _print_ready(console, state, local, control_plane.api_port)
        options.ready_file.write_text(str(os.getpid()))
        await stop.wait()
        console.print("stopping: apps, then sidecars, then the control plane ...")
    finally:
        for task in list(applying):
            task.cancel()
        await local.stop()
        await control_plane.stop()
        options.ready_file.unlink(missing_ok=True)
        options.pid_file.unlink(missing_ok=True)
        console.print("sidemesh is down.")
    return 0


def _print_ready(console: Console, state: MeshState, local: LocalMesh, api_port: int) -> None:
    failed = [m["name"] for m in local.status() if not m["ready"]]
    if failed:
        console.print(f"[yellow]not ready:[/] {', '.join(failed)} (sidemesh logs NAME)")
    console.print("\n[bold]sidemesh is up.[/]")
    for gateway in state.gateways.values():
        for route in gateway.routes:
            console.print(
                f"  {route.service:>12}: http://{gateway.address}:{gateway.port}{route.prefix}"
            )
    console.print(
        f"  {'API':>12}: http://127.0.0.1:{api_port}/v1/state\n"
        "Try: sidemesh status · sidemesh proxy-config NAME · sidemesh logs NAME · "
        "sidemesh down (or Ctrl-C)"
    )


def start_detached(options: UpOptions, argv: list[str], console: Console) -> int:
    """Run ``sidemesh up`` in the background and return once the mesh is up."""
    other = running_pid(options.runtime_dir)
    if other is not None:
        console.print(f"[red]a mesh already runs from {options.runtime_dir} (pid {other})[/]")
        return 1
    options.runtime_dir.mkdir(parents=True, exist_ok=True)
    options.ready_file.unlink(missing_ok=True)
    with open(options.log_file, "wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "sidemesh", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "COLUMNS": "120"},
        )
    deadline = time.monotonic() + DETACHED_START_TIMEOUT_S
    with console.status("starting the mesh in the background ..."):
        while not options.ready_file.exists():
            code = child.poll()
            if code is not None:
                console.print(options.log_file.read_text(errors="replace"), markup=False)
                return code or 1
            if time.monotonic() > deadline:
                console.print(f"[red]not up after {DETACHED_START_TIMEOUT_S:.0f}s[/]")
                return 1
            time.sleep(0.1)
    console.print(options.log_file.read_text(errors="replace"), markup=False, highlight=False)
    console.print(f"running in the background (pid {child.pid}); its log: {options.log_file}")
    return 0


def down(runtime_dir: Path, console: Console, timeout: float = 60.0) -> int:
    pid = running_pid(runtime_dir)
    if pid is None:
        console.print(f"no mesh runs from {runtime_dir}.")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    with console.status(f"stopping the mesh (pid {pid}) ..."):
        while _alive(pid):
            if time.monotonic() > deadline:
                console.print(f"[red]pid {pid} did not stop in {timeout:.0f}s; killing it[/]")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return 1
            time.sleep(0.1)
    console.print("sidemesh is down.")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child of ours that exited is a zombie until reaped: that counts as gone.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True
