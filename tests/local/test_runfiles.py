"""The run files of ``sidemesh up``: what ``down`` finds and stops after a killed run.
Real processes (``sleep``) in their own sessions, as ``up`` starts them."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from sidemesh.local.ports import StickyPorts
from sidemesh.local.runfiles import ProcessRegistry, RunFiles, clean_up, leftovers, start_ticks


def _started(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, start_new_session=True)


def test_clean_up_stops_recorded_process_groups_and_removes_the_temp_dir(tmp_path: Path) -> None:
    files = RunFiles(tmp_path)
    temp_dir = Path(tempfile.mkdtemp(prefix="sidemesh-run-"))
    (temp_dir / "a").mkdir()
    registry = ProcessRegistry(files, temp_dir)
    # A process with a child in its group: both must go.
    parent = _started("sh", "-c", "sleep 60 & wait")
    registry.record("web-1 sidecar", parent.pid)
    time.sleep(0.2)
    child = int(Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()[0])
    assert os.stat(files.processes_file).st_mode & 0o777 == 0o600

    found = leftovers(files)
    assert [p.name for p in found.processes] == ["web-1 sidecar"] and found.temp_dir == temp_dir
    clean_up(files, timeout=5)
    parent.wait(timeout=5)
    assert start_ticks(child) is None
    assert not temp_dir.exists() and not files.processes_file.exists()


def test_a_reused_pid_is_not_taken_for_a_recorded_process(tmp_path: Path) -> None:
    files = RunFiles(tmp_path)
    bystander = _started("sleep", "60")
    try:
        # Recorded with another start time: the pid was reused by someone else.
        files.processes_file.write_text(
            json.dumps(
                {
                    "tempDir": None,
                    "processes": [{"name": "old app", "pid": bystander.pid, "started": 1}],
                }
            )
        )
        assert leftovers(files).processes == []
        clean_up(files, timeout=1)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_picked_ports_survive_a_restart_of_the_picker(tmp_path: Path) -> None:
    first = StickyPorts(tmp_path / "ports.json")
    port = first("web-1", "admin", frozenset())
    again = StickyPorts(tmp_path / "ports.json")
    assert again("web-1", "admin", frozenset()) == port
    assert again("web-2", "admin", frozenset()) != port
