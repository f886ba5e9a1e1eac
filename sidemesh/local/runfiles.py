"""The run files of one ``sidemesh up``, in its runtime directory (``.sidemesh``).

They are how the processes of a local mesh talk to each other, and how ``sidemesh
down`` finds whatever a killed run left behind:

- ``up.pid``, ``up.ready`` (by ``up``): the supervisor's pid; ready once the mesh is up.
- ``processes.json`` (by ``up``): every process it started (pid, start time), its temp dir.
- ``plan.json`` (by the control plane): the last mesh state it accepted, every port
  resolved: what ``up`` runs.
- ``workloads.json`` (by ``up``): each workload's processes, restarts and readiness:
  what the API and ``sidemesh status`` show.
- ``ports.json`` (by the control plane): the ports it picked, kept across its restarts.

Plans are private (0600): a workload's env may hold values from ``${VAR}``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidemesh.identity.ca import write_private


@dataclass(frozen=True)
class RunFiles:
    runtime_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.runtime_dir / "up.pid"

    @property
    def ready_file(self) -> Path:
        return self.runtime_dir / "up.ready"

    @property
    def log_file(self) -> Path:
        return self.runtime_dir / "up.log"

    @property
    def logs(self) -> Path:
        return self.runtime_dir / "logs"

    @property
    def processes_file(self) -> Path:
        return self.runtime_dir / "processes.json"

    @property
    def plan_file(self) -> Path:
        return self.runtime_dir / "plan.json"

    @property
    def status_file(self) -> Path:
        return self.runtime_dir / "workloads.json"

    @property
    def ports_file(self) -> Path:
        return self.runtime_dir / "ports.json"

    @property
    def state_dir(self) -> Path:
        """The control plane's state directory: CA and bootstrap tokens."""
        return self.runtime_dir / "controlplane"


def write_json(path: Path, data: Any) -> None:
    """Atomically, readable by the owner only: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(data, indent=1).encode())


def read_json(path: Path) -> Any:
    """The file's JSON, or None if it is missing or not (yet) valid."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- the processes of a run ---------------------------------------------------


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if it does not run. With
    the pid it names one process for good: a pid reused later has another start."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its end.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None  # exited, waiting to be reaped
    return int(fields[19])


def write_pid_file(path: Path) -> None:
    """This process's pid and start time: a later reader can tell it from another
    process that got the same pid after this one died."""
    pid = os.getpid()
    path.write_text(f"{pid} {start_ticks(pid)}\n")


def read_pid_file(path: Path) -> int | None:
    """The pid in ``path`` (``write_pid_file``) if that very process still runs."""
    try:
        pid_text, _, started = path.read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    ticks = start_ticks(pid)
    if ticks is None or (started and started != str(ticks)):
        return None
    return pid


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    started: int
    """``start_ticks`` when recorded."""

    def running(self) -> bool:
        return start_ticks(self.pid) == self.started


class ProcessRegistry:
    """What one ``sidemesh up`` started, kept in ``processes.json`` as it happens, so
    that if ``up`` itself is killed, ``down`` can still find and stop everything."""

    def __init__(self, files: RunFiles, temp_dir: Path) -> None:
        self.files = files
        self.temp_dir = temp_dir
        self._records: dict[str, ProcessRecord] = {}
        self._save()

    def record(self, name: str, pid: int) -> None:
        started = start_ticks(pid)
        if started is not None:
            self._records[name] = ProcessRecord(name, pid, started)
            self._save()

    def _save(self) -> None:
        write_json(
            self.files.processes_file,
            {
                "supervisor": os.getpid(),
                "tempDir": str(self.temp_dir),
                "processes": [vars(r) for r in self._records.values()],
            },
        )


@dataclass(frozen=True)
class Leftovers:
    processes: list[ProcessRecord]
    temp_dir: Path | None


def leftovers(files: RunFiles) -> Leftovers:
    """What a run recorded that still exists."""
    data = read_json(files.processes_file) or {}
    records = [ProcessRecord(**r) for r in data.get("processes", [])]
    temp = data.get("tempDir")
    return Leftovers(
        processes=[r for r in records if r.running()],
        temp_dir=Path(temp) if temp and Path(temp).exists() else None,
    )


def clean_up(files: RunFiles, timeout: float = 10.0) -> Leftovers:
    """Stop every recorded process that still runs (its whole process group: SIGTERM,
    then SIGKILL after ``timeout``), remove the run's temp dir and run files. Returns
    what was found."""
    found = leftovers(files)
    for record in found.processes:
        signal_group(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(r.running() for r in found.processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    for record in found.processes:
        # Whatever is left in the group, the recorded process included.
        signal_group(record.pid, signal.SIGKILL)
    if found.temp_dir is not None:
        shutil.rmtree(found.temp_dir, ignore_errors=True)
    # The plan holds env values expanded from ${VAR}: it does not outlive the run.
    for path in (
        files.processes_file,
        files.ready_file,
        files.pid_file,
        files.status_file,
        files.plan_file,
        files.ports_file,
    ):
        path.unlink(missing_ok=True)
    return found


def signal_group(pid: int, sig: int) -> None:
    """Signal the process group ``pid`` leads: every process of a run leads its own
    (it was started in a new session), with whatever it started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
