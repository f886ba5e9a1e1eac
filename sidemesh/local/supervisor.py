"""``MeshSupervisor``: the ``sidemesh up`` process. It runs the control plane as a child
it restarts within a second if it dies (a spare waits with its imports done, as a cold
start takes longer than that), and every workload the control plane's plan names, each
as a supervised app and sidecar.

The supervisor holds no mesh logic of its own: the control plane reads mesh.yaml and
writes each accepted state to ``plan.json``; the supervisor runs what the plan says
and writes what runs to ``workloads.json``, which the control plane's API serves. So
killing the control plane stops no workload (sidecars keep their config and serve),
and killing the supervisor stops every child, which dies with it (parent-death
signal); ``sidemesh down`` cleans up after either from the run files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from sidemesh.errors import ControlPlaneFailed
from sidemesh.local.process import ProcessSpec, Supervised
from sidemesh.local.runfiles import ProcessRegistry, RunFiles, read_json, write_json
from sidemesh.local.runner import LocalMesh, LocalSettings, Progress
from sidemesh.model import MeshState

log = logging.getLogger(__name__)

CONTROL_PLANE_READY_TIMEOUT_S = 60.0
PLAN_POLL_S = 0.2
STATUS_WRITE_S = 0.25
CONTROL_PLANE_BACKOFF_FIRST_S = 0.2
"""Sidecars ride out a control plane restart, but new workloads and certificate
renewals wait for it: it comes back first thing, and never backs off for long."""
CONTROL_PLANE_BACKOFF_MAX_S = 2.0


@dataclass(frozen=True)
class SupervisorOptions:
    mesh_file: Path
    files: RunFiles
    xds_port: int
    api_port: int
    ca_port: int
    """Concrete ports (not 0): a restarted control plane must come back on them."""
    xds_mode: str
    cert_lifetime_s: float
    log_format: str
    log_level: str


class MeshSupervisor:
    def __init__(self, options: SupervisorOptions, progress: Progress) -> None:
        self.options = options
        self.progress = progress
        files = options.files
        self.temp_dir = Path(tempfile.mkdtemp(prefix="sidemesh-run-"))
        self.registry = ProcessRegistry(files, self.temp_dir)
        self.control_plane = Supervised(self._control_plane_spec(), self._record)
        self.local = LocalMesh(
            LocalSettings(
                runtime_dir=files.runtime_dir,
                state_dir=files.state_dir,
                workdir=options.mesh_file.resolve().parent,
                xds_address=f"127.0.0.1:{options.xds_port}",
                ca_address=f"127.0.0.1:{options.ca_port}",
                socket_root=self.temp_dir,
                xds_mode=options.xds_mode,
            ),
            progress=progress,
            on_spawn=self._record,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._plan_signature: tuple[int, int, int] | None = None
        self._status_text = ""
        self._log_offset = 0

    def _record(self, process: Supervised) -> None:
        if process.pid is not None:
            self.registry.record(process.spec.name, process.pid)
        if process.spare_pid is not None:
            self.registry.record(f"{process.spec.name} spare", process.spare_pid)

    async def start(self) -> MeshState:
        """Start the control plane, then every workload of its first plan. Raises
        ``ControlPlaneFailed`` if the control plane does not come up."""
        log_path = self.control_plane.spec.log_path
        self._log_offset = log_path.stat().st_size if log_path.exists() else 0
        await self.control_plane.start()
        await self._wait_control_plane()
        state = self._read_plan()
        if state is None:
            raise ControlPlaneFailed(
                f"the control plane wrote no plan to {self.options.files.plan_file}"
            )
        await self.local.apply(state)
        self._write_status()
        self._tasks = [
            asyncio.create_task(self._follow_plan(), name="follow plan"),
            asyncio.create_task(self._keep_writing_status(), name="write status"),
            asyncio.create_task(self._echo_control_plane_log(), name="echo log"),
        ]
        return state

    async def stop(self) -> None:
        """Apps, then sidecars, then the control plane; then the run's files."""
        for task in self._tasks:
            task.cancel()
        # A task that died of a bug must not keep the workloads from being stopped.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.local.stop()
        await self.control_plane.stop()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        files = self.options.files
        for path in (files.status_file, files.processes_file):
            path.unlink(missing_ok=True)

    # --- the control plane ---------------------------------------------------------
    def _control_plane_spec(self) -> ProcessSpec:
        o = self.options
        args = [
            "controlplane",
            "--config", str(o.mesh_file),
            "--xds-port", str(o.xds_port), "--api-port", str(o.api_port),
            "--ca-port", str(o.ca_port),
            "--state-dir", str(o.files.state_dir),
            "--cert-lifetime", str(o.cert_lifetime_s),
            "--log-format", o.log_format, "--log-level", o.log_level,
            "--local-run-dir", str(o.files.runtime_dir),
        ]  # fmt: skip
        return ProcessSpec(
            name="controlplane",
            argv=[sys.executable, "-m", "sidemesh", *args],
            spare_argv=[sys.executable, "-m", "sidemesh.cli.spare", *args],
            # The whole environment: mesh.yaml's ${VAR}s must expand as they did for
            # `up` (the flags above win over any SIDEMESH_* setting).
            env=dict(os.environ),
            cwd=Path.cwd(),
            log_path=o.files.logs / "controlplane.log",
            backoff_first_s=CONTROL_PLANE_BACKOFF_FIRST_S,
            backoff_max_s=CONTROL_PLANE_BACKOFF_MAX_S,
        )

    async def _wait_control_plane(self) -> None:
        deadline = time.monotonic() + CONTROL_PLANE_READY_TIMEOUT_S
        url = f"http://127.0.0.1:{self.options.api_port}/healthz"
        log_path = self.control_plane.spec.log_path
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.control_plane.exited.is_set():
                    tail = _tail(log_path)
                    raise ControlPlaneFailed(
                        f"the control plane exited with status {self.control_plane.last_exit}"
                        f"{': ' + tail if tail else ''} (log: {log_path})"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise ControlPlaneFailed(
            f"the control plane did not answer on {url} in "
            f"{CONTROL_PLANE_READY_TIMEOUT_S:.0f}s (log: {log_path})"
        )

    # --- following the plan --------------------------------------------------------
    def _read_plan(self) -> MeshState | None:
        path = self.options.files.plan_file
        try:
            st = path.stat()
        except OSError:
            return None
        data = read_json(path)
        if data is None:
            return None
        self._plan_signature = _plan_signature(st)
        return MeshState.from_plan(data)

    async def _follow_plan(self) -> None:
        """Apply each plan the control plane writes (it writes only good ones; a
        restarted control plane writes the same again, which changes nothing)."""
        path = self.options.files.plan_file
        while True:
            await asyncio.sleep(PLAN_POLL_S)
            try:
                st = path.stat()
            except OSError:
                continue
            if _plan_signature(st) == self._plan_signature:
                continue
            try:
                state = self._read_plan()
                if state is not None:
                    await self.local.apply(state)
            except Exception:  # a bug here must not stop following later plans
                log.exception("could not apply %s; the workloads keep running as they are", path)

    # --- what runs, for the API ----------------------------------------------------
    def _write_status(self) -> None:
        status = {
            "supervisor": os.getpid(),
            "controlPlane": self.control_plane.to_json(),
            "workloads": self.local.status(),
        }
        text = repr(status)
        if text != self._status_text:
            write_json(self.options.files.status_file, status)
            self._status_text = text

    async def _keep_writing_status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_WRITE_S)
            try:
                self._write_status()
            except OSError as exc:  # a full disk, say: status goes stale, nothing stops
                log.error("cannot write %s: %s", self.options.files.status_file, exc)

    async def _echo_control_plane_log(self) -> None:
        """What the control plane logs (refused edits, NACKs; warnings and up by default)
        reaches the terminal of ``up``, as it did when both were one process."""
        path = self.control_plane.spec.log_path
        offset = self._log_offset
        while True:
            await asyncio.sleep(STATUS_WRITE_S)
            try:
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
            except OSError:
                continue
            end = chunk.rfind(b"\n") + 1
            if end:
                offset += end
                sys.stderr.write(chunk[:end].decode(errors="replace"))
                sys.stderr.flush()


def _plan_signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_mtime_ns, st.st_ino, st.st_size)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])
