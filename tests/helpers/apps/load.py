"""A bounded load on 127.0.0.1: ``--rate`` GET requests a second for ``--seconds``
(open loop: each request has its start time, late ones start as soon as a connection
is free), over at most ``--connections`` keep-alive HTTP/1.1 connections to
``127.0.0.1:<--port>`` with ``Host: <--host>``. Prints one JSON object: how many were
sent, how each ended, and which workload answered.

A separate process, so the load it makes does not compete for the test process's
interpreter lock with the control plane and the backends it drives."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from typing import Any

LOOPBACK = "127.0.0.1"
MAX_REQUESTS = 5000
"""A hard cap whatever the arguments say: this is a test, not a benchmark."""


class Result:
    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.answered_by: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.max_late_s = 0.0
        self.max_latency_s = 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one HTTP/1.1 response with a Content-Length."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before a response")
    status = int(status_line.split()[1])
    length, keep_alive = 0, True
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        elif name.strip().lower() == "connection" and value.strip().lower() == "close":
            keep_alive = False
    return status, await reader.readexactly(length), keep_alive


async def _worker(
    args: argparse.Namespace, starts: asyncio.Queue[float], result: Result, t0: float
) -> None:
    request = f"GET /load HTTP/1.1\r\nHost: {args.host}\r\n\r\n".encode()
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while True:
        try:
            due = starts.get_nowait()
        except asyncio.QueueEmpty:
            break
        delay = t0 + due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            result.max_late_s = max(result.max_late_s, -delay)
        started = time.monotonic()
        try:
            if conn is None:
                conn = await asyncio.wait_for(
                    asyncio.open_connection(LOOPBACK, args.port), args.timeout
                )
            conn[1].write(request)
            status, body, keep_alive = await asyncio.wait_for(_read_response(conn[0]), args.timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            outcome = f"error {type(exc).__name__}"
            result.outcomes[outcome] += 1
            result.examples.setdefault(outcome, repr(exc))
            if conn is not None:
                conn[1].close()
            conn = None
            continue
        result.max_latency_s = max(result.max_latency_s, time.monotonic() - started)
        result.outcomes[str(status)] += 1
        if status == 200:
            result.answered_by[json.loads(body).get("workload", "?")] += 1
        else:
            result.examples.setdefault(str(status), body.decode(errors="replace")[:300])
        if not keep_alive:
            conn[1].close()
            conn = None
    if conn is not None:
        conn[1].close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    count = min(int(args.rate * args.seconds), MAX_REQUESTS)
    starts: asyncio.Queue[float] = asyncio.Queue()
    for i in range(count):
        starts.put_nowait(i / args.rate)
    result = Result()
    t0 = time.monotonic()
    await asyncio.gather(*(_worker(args, starts, result, t0) for _ in range(args.connections)))
    elapsed = time.monotonic() - t0
    return {
        "sent": count,
        "elapsedSeconds": round(elapsed, 3),
        "achievedRate": round(count / elapsed, 1),
        "maxLateSeconds": round(result.max_late_s, 3),
        "maxLatencySeconds": round(result.max_latency_s, 3),
        "outcomes": dict(result.outcomes),
        "answeredBy": dict(result.answered_by),
        "examples": result.examples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--rate", type=float, default=250)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=5)
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
