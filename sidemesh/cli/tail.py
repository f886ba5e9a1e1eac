"""Print the end of a log file, and optionally keep following it."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path


def follow_log(
    path: Path,
    lines: int,
    follow: bool,
    render: Callable[[str], str | None] = lambda line: line,
) -> None:
    """``render``: what to print for each line (``access_log.render`` puts the sidecar's
    access-log lines into words)."""
    with open(path, "rb") as handle:
        last = b"\n"
        for line in deque(handle, maxlen=lines):
            sys.stdout.write(_rendered(line, render))
            last = line
        if not last.endswith(b"\n"):
            sys.stdout.write("\n")
        sys.stdout.flush()
        if not follow:
            return
        try:
            while True:
                chunk = handle.readline()
                if chunk:
                    sys.stdout.write(_rendered(chunk, render))
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return


def _rendered(line: bytes, render: Callable[[str], str | None]) -> str:
    """The line as ``render`` puts it, or nothing if it returns None (a line left out)."""
    text = line.decode(errors="replace")
    body = text.rstrip("\n")
    shown = render(body)
    return "" if shown is None else shown + text[len(body) :]
