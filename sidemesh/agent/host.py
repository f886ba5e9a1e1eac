"""One agent for every workload of a host (``sidemesh join``), as SPIRE's agent serves
every workload of a node: one Python process instead of one per workload.

Each workload still has its own of everything that identifies it: its key (made in
this process, never written), certificate, SDS socket and admin socket (in a 0700
directory of its own, the sockets 0600), token, registration and Envoy. The host agent
runs each workload's ``Agent`` side by side, takes the signals for all of them (a
clean stop drains and deregisters each), and restarts a workload whose Envoy exited,
with backoff, without touching the others."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass

from sidemesh.agent.sidecar import STOP_SIGNALS, Agent

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0)


@dataclass
class Hosted:
    """One workload of the host: how to make its agent (a fresh one per start)."""

    name: str
    make: Callable[[], Agent]
    agent: Agent | None = None
    task: asyncio.Task[int] | None = None
    starts: int = 0


class HostAgent:
    def __init__(self, workloads: list[Hosted]) -> None:
        self.workloads = workloads
        self.stopping = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
        try:
            await asyncio.gather(*(self._keep(w) for w in self.workloads))
        finally:
            for sig in (*STOP_SIGNALS, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("every workload of this host has stopped")
        return 0

    async def _keep(self, hosted: Hosted) -> None:
        """Run one workload's agent; start it again if its Envoy exits on its own."""
        failures = 0
        while not self.stopping:
            hosted.agent = hosted.make()
            hosted.starts += 1
            hosted.task = asyncio.create_task(hosted.agent.run())
            try:
                code = await hosted.task
            except asyncio.CancelledError:
                return  # stopped before its Envoy ran
            except Exception:
                log.exception("the agent of %s failed", hosted.name)
                code = 1
            if self.stopping:
                return
            wait = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)]
            failures += 1
            log.warning(
                "Envoy of %s exited (status %d); starting it again in %.0f s",
                hosted.name,
                code,
                wait,
            )
            await asyncio.sleep(wait)

    def stop(self) -> None:
        """Drain and stop every workload; a second signal stops them at once."""
        self.stopping = True
        for hosted in self.workloads:
            if hosted.agent is not None and hosted.agent.started:
                hosted.agent.stop()
            elif hosted.task is not None:
                hosted.task.cancel()  # still waiting for its token or certificate
