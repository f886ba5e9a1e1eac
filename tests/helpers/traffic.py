"""Bounded background traffic to 127.0.0.1 from threads of the test process, each
request's outcome timed, for tests that change the mesh under load."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

import httpx

MAX_REQUESTS = 20_000
"""A hard cap, whatever the test: this is a test, not a benchmark."""


@dataclass(frozen=True)
class Outcome:
    at: float
    """time.monotonic() when it ended."""
    what: str
    """The workload that answered (a 200 with JSON naming it), else the status code,
    else the name of the exception."""
    ok: bool


@dataclass
class BackgroundLoad:
    """GET ``url`` from ``threads`` threads until the ``with`` block ends (or
    ``MAX_REQUESTS``), each thread pausing ``pause_s`` between requests."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    threads: int = 1
    pause_s: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> BackgroundLoad:
        self._workers = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=15)

    def __enter__(self) -> BackgroundLoad:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        with httpx.Client(timeout=10, headers=self.headers) as client:
            while not self._stop.is_set() and len(self.outcomes) < MAX_REQUESTS:
                self.outcomes.append(_request(client, self.url))
                if self.pause_s:
                    time.sleep(self.pause_s)

    def answers(self) -> Counter[str]:
        """Every outcome, counted."""
        return Counter(o.what for o in self.outcomes)

    def failures_since(self, start: float) -> Counter[str]:
        return Counter(o.what for o in self.outcomes if o.at >= start and not o.ok)


def _request(client: httpx.Client, url: str) -> Outcome:
    try:
        reply = client.get(url)
    except httpx.HTTPError as exc:
        return Outcome(time.monotonic(), type(exc).__name__, False)
    if reply.status_code != 200:
        return Outcome(time.monotonic(), str(reply.status_code), False)
    try:
        who = str(reply.json()["workload"])
    except (ValueError, KeyError, TypeError):
        who = "200"
    return Outcome(time.monotonic(), who, True)
