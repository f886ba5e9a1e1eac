"""Scraping every proxy's stats on an interval into golden signals.

Each round asks every proxy at once, each within the admin timeout, so one stuck
proxy delays no other's numbers; a proxy that does not answer keeps its last counts
(its edges show no new traffic rather than vanishing) and the miss is counted."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from sidemesh.telemetry.admin import ADMIN_TIMEOUT_S, ProxyAdmin, ask_all
from sidemesh.telemetry.envoy_stats import STATS_PATH, Traffic, destination_traffic
from sidemesh.telemetry.golden import Edge, GoldenSignals

log = logging.getLogger(__name__)

SCRAPE_INTERVAL_S = 5.0


class Scraper:
    def __init__(
        self,
        proxies: Callable[[], Sequence[ProxyAdmin]],
        service_of: Callable[[ProxyAdmin], str],
        interval_s: float = SCRAPE_INTERVAL_S,
        timeout_s: float = ADMIN_TIMEOUT_S,
    ) -> None:
        self.proxies = proxies
        self.service_of = service_of
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.signals = GoldenSignals()
        self.scrapes = 0
        self.errors = 0
        """Proxies that did not answer, over all rounds."""
        self.last_errors: dict[str, str] = {}
        """Proxy → why it did not answer in the last round."""

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.scrape_once()
            except Exception:
                log.exception("telemetry: a scrape round failed; trying again next round")
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def scrape_once(self) -> None:
        answers = await ask_all(self.proxies(), STATS_PATH, self.timeout_s)
        previous = self.signals.latest
        edges: dict[Edge, Traffic] = {}
        errors: dict[str, str] = {}
        for answer in answers:
            proxy = answer.proxy
            if answer.error is not None or not isinstance(answer.body, dict):
                errors[str(proxy.ref)] = answer.error or "no stats"
                edges.update({e: t for e, t in previous.items() if e.source == proxy.ref})
                continue
            service = self.service_of(proxy)
            for destination, traffic in destination_traffic(answer.body).items():
                # Every sidecar has every cluster; most go unused.
                if traffic.requests or traffic.connections:
                    edges[Edge(proxy.ref, service, destination)] = traffic
        self.signals.record(time.monotonic(), edges)
        self.scrapes += 1
        self.errors += len(errors)
        self.last_errors = errors
