"""One supervised process: started with its own log file and process group, restarted
with backoff when it dies, stopped with SIGTERM then SIGKILL, children included."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from sidemesh.agent.parent_death import die_with_parent
from sidemesh.local.runfiles import signal_group

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
HEALTHY_AFTER_S = 30.0
"""A process that ran this long is healthy again: its next crash starts the backoff anew."""
STOP_TIMEOUT_S = 10.0
SPARE_AFTER_S = 2.0
"""A spare is started once the process it stands in for has run this long, so that
its imports do not slow that process's own start."""
SPARE_POLL_S = 0.5


class ProcessState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    log_path: Path
    backoff_first_s: float = BACKOFF_FIRST_S
    backoff_max_s: float = BACKOFF_MAX_S
    stop_leader_first: bool = False
    """Stop by signalling the process alone, then its group only if it outlives the
    timeout: for a sidecar agent, which drains its Envoy (in its group) before stopping
    it; a group signal would stop Envoy at once, mid-request."""
    spare_argv: Sequence[str] | None = None
    """A command that does the process's imports, then waits for a line on its stdin
    before it runs as ``argv`` would (``sidemesh.cli.spare``). One is kept started, and
    a restart puts it to work instead of starting ``argv`` cold: for the control plane,
    whose imports alone take over a second."""


SpawnHook = Callable[["Supervised"], None]
"""Called each time a process is (re)started, with its new pid (run files record it)."""


class Supervised:
    def __init__(self, spec: ProcessSpec, on_spawn: SpawnHook | None = None) -> None:
        self.spec = spec
        self.on_spawn = on_spawn
        self.state = ProcessState.STOPPED
        self.restarts = 0
        self.last_exit: int | None = None
        self.last_exit_at: float | None = None
        """When it last exited (Unix time): a crash is news for a while after."""
        self.process: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._monitor: asyncio.Task[None] | None = None
        self.exited = asyncio.Event()
        """Set each time the process exits (readiness waits use it to fail fast)."""
        self.spare: asyncio.subprocess.Process | None = None
        self._spares: asyncio.Task[None] | None = None
        self._started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def spare_pid(self) -> int | None:
        spare = self.spare
        return spare.pid if spare is not None and spare.returncode is None else None

    async def start(self) -> None:
        self._stopping = False
        await self._spawn()
        self._monitor = asyncio.create_task(self._watch(), name=f"watch {self.spec.name}")
        if self.spec.spare_argv is not None:
            self._spares = asyncio.create_task(
                self._keep_spare(self.spec.spare_argv), name=f"spare {self.spec.name}"
            )

    async def _spawn(self) -> None:
        self.state = ProcessState.STARTING
        self.exited.clear()
        self.process = await self._take_spare() or await self._exec(
            self.spec.argv, asyncio.subprocess.DEVNULL
        )
        self._started_at = time.monotonic()
        self.state = ProcessState.RUNNING
        if self.on_spawn is not None:
            self.on_spawn(self)

    async def _exec(self, argv: Sequence[str], stdin: int) -> asyncio.subprocess.Process:
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spec.log_path, "ab") as out:
            return await asyncio.create_subprocess_exec(
                # If the supervisor is killed, its children go too: nothing is orphaned.
                *die_with_parent(argv),
                env=dict(self.spec.env),
                cwd=self.spec.cwd,
                stdin=stdin,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                # Its own process group, so stopping it stops whatever it started.
                start_new_session=True,
            )

    # --- the spare ---------------------------------------------------------------
    async def _keep_spare(self, argv: Sequence[str]) -> None:
        """Keep one spare started while the process runs (a new one once a spare was
        put to work, or died)."""
        while True:
            await asyncio.sleep(SPARE_POLL_S)
            if (
                self._stopping
                or self.spare_pid is not None
                or self.state is not ProcessState.RUNNING
                or time.monotonic() - self._started_at < SPARE_AFTER_S
            ):
                continue
            try:
                self.spare = await self._exec(argv, asyncio.subprocess.PIPE)
            except OSError as exc:  # no spare: a restart is a cold start, nothing worse
                log.error("a spare %s could not be started: %s", self.spec.name, exc)
                continue
            if self.on_spawn is not None:
                self.on_spawn(self)

    async def _take_spare(self) -> asyncio.subprocess.Process | None:
        """The spare, told to run, if there is one that still waits."""
        spare, self.spare = self.spare, None
        if spare is None or spare.returncode is not None or spare.stdin is None:
            return None
        try:
            spare.stdin.write(b"run\n")
            await spare.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):  # it died meanwhile
            return None
        spare.stdin.close()
        log.info("%s: the spare (pid %d) takes over", self.spec.name, spare.pid)
        return spare

    async def _stop_spare(self) -> None:
        if self._spares is not None:
            self._spares.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._spares
        spare, self.spare = self.spare, None
        if spare is not None:
            signal_group(spare.pid, signal.SIGKILL)  # it holds nothing yet
            await spare.wait()

    async def _watch(self) -> None:
        backoff = self.spec.backoff_first_s
        while True:
            assert self.process is not None
            started = time.monotonic()
            code = await self.process.wait()
            self.last_exit = code
            self.last_exit_at = time.time()
            self.exited.set()
            if self._stopping:
                self.state = ProcessState.STOPPED
                return
            if time.monotonic() - started > HEALTHY_AFTER_S:
                backoff = self.spec.backoff_first_s
            self.restarts += 1
            self.state = ProcessState.RESTARTING
            log.warning(
                "%s exited with status %d; restarting in %.1fs (restart %d); log: %s",
                self.spec.name,
                code,
                backoff,
                self.restarts,
                self.spec.log_path,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.spec.backoff_max_s)
            if self._stopping:
                self.state = ProcessState.STOPPED
                return
            while True:
                try:
                    await self._spawn()
                    break
                except OSError as exc:  # fork failed, binary gone: keep trying, say why
                    log.error(
                        "%s could not be started: %s; retrying in %.1fs",
                        self.spec.name,
                        exc,
                        backoff,
                    )
                    self.state = ProcessState.RESTARTING
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.spec.backoff_max_s)
                    if self._stopping:
                        self.state = ProcessState.STOPPED
                        return

    async def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        self._stopping = True
        await self._stop_spare()
        process = self.process
        if process is not None and process.returncode is None:
            if self.spec.stop_leader_first:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
            else:
                signal_group(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                log.warning("%s did not stop in %.0fs; killing it", self.spec.name, timeout)
                signal_group(process.pid, signal.SIGKILL)
                await process.wait()
        # Anything the process left behind in its group goes too.
        if process is not None:
            signal_group(process.pid, signal.SIGKILL)
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        self.state = ProcessState.STOPPED

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "pid": self.pid if self.state is not ProcessState.STOPPED else None,
            "restarts": self.restarts,
            "lastExit": self.last_exit,
            "lastExitAt": self.last_exit_at,
            "log": str(self.spec.log_path),
        }
