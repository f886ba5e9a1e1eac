"""Bursts of mesh states make few pushes: the last of a burst once it is quiet, and
never later than the bound after the burst began."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import replace

from sidemesh.model import MeshState
from sidemesh.xds.debounce import Debouncer


def _states(count: int) -> list[MeshState]:
    empty = MeshState.empty()
    return [replace(empty, version=i + 1) for i in range(count)]


async def test_a_burst_is_one_push_of_its_last_state() -> None:
    pushed: list[tuple[int, float]] = []
    debouncer = Debouncer(lambda s: pushed.append((s.version, time.monotonic())), 0.1, 1.0)
    start = time.monotonic()
    for state in _states(100):
        debouncer.offer(state)
    await asyncio.sleep(0.3)
    assert [v for v, _ in pushed] == [100]
    assert 0.09 <= pushed[0][1] - start < 0.25
    assert (debouncer.pushes, debouncer.merged) == (1, 99)


async def test_a_steady_stream_is_still_pushed_within_the_bound() -> None:
    pushed: list[float] = []
    debouncer = Debouncer(lambda s: pushed.append(time.monotonic()), 0.1, 0.5)
    start = time.monotonic()
    for state in _states(30):  # one every 50 ms, never quiet for 100 ms
        debouncer.offer(state)
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    assert pushed, "never pushed"
    assert pushed[0] - start <= 0.6
    gaps = [b - a for a, b in itertools.pairwise(pushed)]
    assert all(g <= 0.6 for g in gaps), gaps
