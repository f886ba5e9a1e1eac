"""Merging bursts of mesh states into few pushes.

A rollout of a hundred replicas, or a host's registrations arriving one by one, makes
a new mesh state for each change; pushing each to every proxy would translate and send
the whole mesh a hundred times. So a state is pushed once no newer one has come for
``QUIET_S``, and never later than ``MAX_DELAY_S`` after the first state of a burst
(istiod does the same with 100 ms and 10 s; sidemesh keeps the bound low so a change
is never late by more than a second). Only the last state of a burst is pushed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sidemesh.model import MeshState

QUIET_S = 0.1
MAX_DELAY_S = 1.0


class Debouncer:
    def __init__(
        self,
        push: Callable[[MeshState], None],
        quiet_s: float = QUIET_S,
        max_delay_s: float = MAX_DELAY_S,
    ) -> None:
        self.push = push
        self.quiet_s = quiet_s
        self.max_delay_s = max_delay_s
        self.pushes = 0
        """States pushed."""
        self.merged = 0
        """States never pushed because a newer one came within the window."""
        self._pending: MeshState | None = None
        self._first = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def offer(self, state: MeshState) -> None:
        """Push ``state`` soon, unless a newer one comes first (call on the loop)."""
        now = time.monotonic()
        if self._pending is None:
            self._first = now
        else:
            self.merged += 1
        self._pending = state
        if self._timer is not None:
            self._timer.cancel()
        delay = min(self.quiet_s, max(0.0, self._first + self.max_delay_s - now))
        self._timer = asyncio.get_running_loop().call_later(delay, self.flush)

    def flush(self) -> None:
        """Push the pending state now, if any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        state, self._pending = self._pending, None
        if state is not None:
            self.pushes += 1
            self.push(state)
