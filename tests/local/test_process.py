"""A supervised process with a spare: a copy started ahead of need that waits for a
line on stdin, so that a restart is not a cold start. Real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sidemesh.local import process as process_module
from sidemesh.local.process import ProcessSpec, ProcessState, Supervised

# Serves (prints its pid and sleeps) at once, or once a line comes on stdin (a spare).
SERVE = "import os, sys, time; print('serving', os.getpid(), flush=True); time.sleep(60)"
SPARE = f"import sys\nif not sys.stdin.readline(): sys.exit(0)\n{SERVE}"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _until(what: str, done: Callable[[], bool], timeout: float = 10.0) -> float:
    start = time.monotonic()
    while not done():
        assert time.monotonic() - start < timeout, f"not {what} after {timeout:.0f}s"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_a_restart_puts_the_spare_to_work_and_a_new_spare_is_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process_module, "SPARE_AFTER_S", 0.2)
    monkeypatch.setattr(process_module, "SPARE_POLL_S", 0.05)
    log = tmp_path / "p.log"
    spawned: list[tuple[int | None, int | None]] = []
    supervised = Supervised(
        ProcessSpec(
            name="p",
            argv=[sys.executable, "-c", SERVE],
            spare_argv=[sys.executable, "-c", SPARE],
            env=dict(os.environ),
            cwd=tmp_path,
            log_path=log,
            backoff_first_s=0.05,
        ),
        on_spawn=lambda p: spawned.append((p.pid, p.spare_pid)),
    )
    await supervised.start()
    try:
        first = supervised.pid
        assert first is not None
        await _until("a spare started", lambda: supervised.spare_pid is not None)
        spare = supervised.spare_pid
        assert spare is not None and spare != first
        assert (first, spare) in spawned  # recorded, for `down` after a killed run
        os.kill(first, signal.SIGKILL)
        back = await _until("restarted on the spare", lambda: supervised.pid == spare)
        assert back < 1.0
        assert supervised.state is ProcessState.RUNNING and supervised.restarts == 1
        await _until("serving", lambda: f"serving {spare}" in log.read_text())
        await _until("a new spare", lambda: supervised.spare_pid not in (None, spare))
        second_spare = supervised.spare_pid
        assert second_spare is not None
    finally:
        await supervised.stop(timeout=5)
    assert not _alive(spare) and not _alive(second_spare)
    assert log.read_text().count("serving") == 2  # a spare serves only when told


async def _spare(line: bytes) -> tuple[int | None, bytes]:
    """``sidemesh --help`` as a spare, given ``line`` (and then the end of input)."""
    spare = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "sidemesh.cli.spare", "--help"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(spare.communicate(line), 30)
    return spare.returncode, out


async def test_sidemesh_as_a_spare_runs_the_command_only_when_told() -> None:
    code, out = await _spare(b"run\n")
    assert code == 0 and b"controlplane" in out
    # The end of input (its supervisor gone, or stopping it): nothing runs.
    assert await _spare(b"") == (0, b"")
