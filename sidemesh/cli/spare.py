"""``python -m sidemesh.cli.spare ARGS``: ``sidemesh ARGS`` started ahead of need. It
does its imports (over a second of them for the control plane) and then waits for a
line on stdin before it runs the command; end of input (its supervisor gone, or
stopping it) ends it having run nothing. ``sidemesh up`` keeps a spare control plane
so that one that dies is replaced in a fraction of a second, not a cold start."""

from __future__ import annotations

import sys

from sidemesh.cli.main import main  # every command's imports: the point of a spare


def run() -> None:
    if not sys.stdin.buffer.readline():
        return
    sys.argv = ["sidemesh", *sys.argv[1:]]
    main()


if __name__ == "__main__":
    run()
