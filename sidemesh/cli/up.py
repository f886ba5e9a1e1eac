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
from typing import Any

from rich.console import Console
from rich.markup import escape

from sidemesh.cli.api_client import ApiUnreachable, get_json
from sidemesh.cli.status import rejected_config, short_error
from sidemesh.errors import ConfigError, ControlPlaneFailed
from sidemesh.local.ports import StickyPorts, free_port
from sidemesh.local.runfiles import (
    RunFiles,
    clean_up,
    leftovers,
    read_pid_file,
    start_ticks,
    write_pid_file,
)
from sidemesh.local.supervisor import MeshSupervisor, SupervisorOptions
from sidemesh.model import MeshState, load_mesh_file
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
    cert_lifetime_s: float = 3600.0
    log_format: str = "text"
    log_level: str = "warning"

    @property
    def files(self) -> RunFiles:
        return RunFiles(self.runtime_dir)


def running_pid(runtime_dir: Path) -> int | None:
    """The pid of the ``sidemesh up`` that owns ``runtime_dir``, if it still runs (the
    very process: a pid reused since by another is not taken for it)."""
    return read_pid_file(RunFiles(runtime_dir).pid_file)


def run_foreground(options: UpOptions, console: Console) -> int:
    return asyncio.run(_run(options, console))


async def _run(options: UpOptions, console: Console) -> int:
    files = options.files
    other = running_pid(options.runtime_dir)
    if other is not None:
        console.print(
            f"[red]a mesh already runs from {options.runtime_dir} (pid {other})[/]: "
            "`sidemesh down` stops it"
        )
        return 1
    options.runtime_dir.mkdir(parents=True, exist_ok=True)
    _stop_leftovers(files, console)
    settings = ControlPlaneSettings(
        config=options.mesh_file,
        xds_port=options.xds_port or free_port(),
        api_port=options.api_port or free_port(),
        ca_port=options.ca_port or free_port(),
        state_dir=files.state_dir,
    )
    # A bad file is refused before anything starts, every problem listed.
    try:
        first = load_mesh_file(
            options.mesh_file, ports=StickyPorts(), reserved_ports=settings.own_ports()
        )
    except ConfigError as exc:
        # Plain, unwrapped, on stderr: each line names the file, the field and the reason.
        print(f"{exc}\nnothing was started.", file=sys.stderr)
        return EXIT_BAD_INPUT
    supervisor = MeshSupervisor(
        SupervisorOptions(
            mesh_file=options.mesh_file,
            files=files,
            xds_port=settings.xds_port,
            api_port=settings.api_port,
            ca_port=settings.ca_port,
            xds_mode=options.xds_mode,
            cert_lifetime_s=options.cert_lifetime_s,
            log_format=options.log_format,
            log_level=options.log_level,
        ),
        progress=console.print,
    )
    write_pid_file(files.pid_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # From the start: a `down` (SIGTERM) or Ctrl-C while workloads are still starting
    # stops them in order too, and leaves no run files.
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.create_task(stop.wait())
    try:
        count = len(first.workloads) + len(first.gateways)
        console.print(
            f"starting the control plane and {count} workloads and gateways from "
            f"{options.mesh_file} (logs in {files.logs}) ..."
        )
        starting = asyncio.create_task(supervisor.start())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            console.print("stopped while starting.")
            return 1
        try:
            state = starting.result()
        except ControlPlaneFailed as exc:
            console.print(f"[red]cannot start the control plane:[/] {exc}")
            return 1
        proxies = await _proxies(settings.api_port)
        _print_ready(console, state, supervisor, settings.api_port, proxies)
        files.ready_file.write_text(str(os.getpid()))
        await stopping
        console.print("stopping: apps, then sidecars, then the control plane ...")
    finally:
        stopping.cancel()
        await supervisor.stop()
        files.ready_file.unlink(missing_ok=True)
        files.pid_file.unlink(missing_ok=True)
    console.print("sidemesh is down.")
    return 0


def not_ready(members: list[dict[str, Any]], proxies: dict[str, dict[str, Any]]) -> list[str]:
    """What is not ready, one line each, in the words of ``sidemesh status``: a
    process that did not get ready, or a sidecar whose config its Envoy rejected (it
    serves its last good config, so its processes look ready, but it no longer follows
    the mesh). ``members`` as ``LocalMesh.status``, ``proxies`` by node as
    ``/v1/proxies``."""
    lines = []
    for member in members:
        proxy = proxies.get(f"sidecar~{member['name']}~{member['namespace']}", {})
        rejected = rejected_config(proxy)
        if rejected is not None:
            lines.append(f"{member['name']}: config rejected: {short_error(rejected['error'])}")
        elif not member["ready"]:
            lines.append(f"{member['name']} (sidemesh logs {member['name']})")
    return lines


async def _proxies(api_port: int) -> dict[str, dict[str, Any]]:
    """The control plane's proxies by node; none if it does not answer (then only the
    processes tell what is ready)."""
    try:
        answer = await asyncio.to_thread(get_json, f"http://127.0.0.1:{api_port}", "/v1/proxies")
    except (ApiUnreachable, ValueError):
        return {}
    return {p["node"]: p for p in answer["proxies"]}


def _print_ready(
    console: Console,
    state: MeshState,
    supervisor: MeshSupervisor,
    api_port: int,
    proxies: dict[str, dict[str, Any]],
) -> None:
    for line in not_ready(supervisor.local.status(), proxies):
        console.print(f"[yellow]not ready:[/] {escape(line)}")
    console.print("\n[bold]sidemesh is up.[/]")
    for gateway in state.gateways.values():
        for route in gateway.routes:
            console.print(
                f"  {route.service:>12}: http://{gateway.address}:{gateway.port}{route.prefix}"
            )
    console.print(
        f"  {'dashboard':>12}: http://127.0.0.1:{api_port}/\n"
        f"  {'API':>12}: http://127.0.0.1:{api_port}/v1/state\n"
        "Try: sidemesh status · sidemesh traces · sidemesh proxy-config NAME · "
        "sidemesh logs NAME · sidemesh down (or Ctrl-C)"
    )


def _stop_leftovers(files: RunFiles, console: Console) -> None:
    """A run that was killed may have left processes: they hold ports this run needs."""
    found = leftovers(files)
    if found.processes:
        names = ", ".join(sorted(p.name for p in found.processes))
        console.print(f"[yellow]stopping what an earlier run left behind:[/] {names}")
    clean_up(files)


def start_detached(options: UpOptions, argv: list[str], console: Console) -> int:
    """Run ``sidemesh up`` in the background and return once the mesh is up."""
    files = options.files
    other = running_pid(options.runtime_dir)
    if other is not None:
        console.print(f"[red]a mesh already runs from {options.runtime_dir} (pid {other})[/]")
        return 1
    options.runtime_dir.mkdir(parents=True, exist_ok=True)
    files.ready_file.unlink(missing_ok=True)
    with open(files.log_file, "wb") as log:
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
        while not files.ready_file.exists():
            code = child.poll()
            if code is not None:
                console.print(files.log_file.read_text(errors="replace"), markup=False)
                return code or 1
            if time.monotonic() > deadline:
                console.print(f"[red]not up after {DETACHED_START_TIMEOUT_S:.0f}s[/]")
                return 1
            time.sleep(0.1)
    console.print(files.log_file.read_text(errors="replace"), markup=False, highlight=False)
    console.print(f"running in the background (pid {child.pid}); its log: {files.log_file}")
    return 0


def down(runtime_dir: Path, console: Console, timeout: float = 60.0) -> int:
    """Stop the mesh in order if its ``up`` runs; then stop whatever a run left behind
    (a killed ``up`` or control plane) from its run files, and remove its temp dir."""
    files = RunFiles(runtime_dir)
    pid = running_pid(runtime_dir)
    code = 0
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        with console.status(f"stopping the mesh (pid {pid}) ..."):
            while _alive(pid):
                if time.monotonic() > deadline:
                    console.print(f"[red]pid {pid} did not stop in {timeout:.0f}s; killing it[/]")
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    code = 1
                    break
                time.sleep(0.1)
    found = leftovers(files)
    if found.processes or found.temp_dir is not None:
        with console.status("stopping what the run left behind ..."):
            clean_up(files)
        names = ", ".join(sorted(p.name for p in found.processes)) or "none"
        console.print(
            f"stopped {len(found.processes)} processes a run left behind ({names})"
            + (f" and removed {found.temp_dir}" if found.temp_dir is not None else "")
        )
    else:
        clean_up(files)  # run files only
        if pid is None:
            console.print(f"no mesh runs from {runtime_dir}.")
            return 0
    console.print("sidemesh is down.")
    return code


def _alive(pid: int) -> bool:
    # A child of ours that exited is a zombie until reaped: that counts as gone.
    return start_ticks(pid) is not None
