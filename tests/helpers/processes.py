"""Processes a test starts, and which are still running (for no-orphan checks)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, children of children included."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            out |= {int(child)} | descendants(int(child))
    return out


def alive(pid: int) -> bool:
    """Running: not gone, and not a zombie waiting for a parent that may never reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


class Started:
    """Processes a test starts, each with its output in a log file; stopped in reverse
    order (SIGTERM, then SIGKILL after 10 s) when the test ends."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = (self.directory / f"{log}.log").open("ab")
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.directory.glob("*.log"))
        )
