"""Print the end of a log file, and optionally keep following it."""

from __future__ import annotations

import sys
import time
from collections import deque
from pathlib import Path


def follow_log(path: Path, lines: int, follow: bool) -> None:
    with open(path, "rb") as handle:
        last = b"\n"
        for line in deque(handle, maxlen=lines):
            sys.stdout.write(line.decode(errors="replace"))
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
                    sys.stdout.write(chunk.decode(errors="replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return
