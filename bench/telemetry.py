"""Telemetry benchmark: what scraping every proxy's stats costs the control plane.

A child process serves N Envoy admin interfaces on Unix sockets (as sidecars do), each
answering the stats request the control plane makes with the body a sidecar that calls
DESTINATIONS services returns (request counters per response class and a latency
histogram per outbound cluster, the same JSON shape Envoy's /stats?format=json gives).
This process runs the control plane's own ``Scraper`` against them for ROUNDS rounds
and measures its CPU time (``time.process_time``) and wall time per round. The cost at
the default interval is the CPU of one round over the interval (5 s). Compared side by
side: N proxies against 1 proxy (the floor of a round: the event loop and one client)
times N, and the parse alone (no sockets) of N bodies.

Ends with one line:
  telemetry: 200 proxies every 5s cost 2.4% of a core (target < 10%)

Usage: python -m bench.telemetry [--proxies 200] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sidemesh.model.refs import WorkloadRef
from sidemesh.telemetry import ProxyAdmin, Scraper
from sidemesh.telemetry.envoy_stats import destination_traffic
from sidemesh.telemetry.scraper import SCRAPE_INTERVAL_S

DESTINATIONS = 10
TARGET_SHARE = 0.10
BOUNDS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)


def stats_body(seed: int) -> bytes:
    """What a sidecar calling DESTINATIONS services answers the scraper's request."""
    stats: list[dict[str, Any]] = []
    histograms = []
    for d in range(DESTINATIONS):
        cluster = f"cluster.outbound|9080||svc-{d}.default"
        total = 1000 * (d + 1) + seed
        stats += [
            {"name": f"{cluster}.upstream_rq_total", "value": total},
            {"name": f"{cluster}.upstream_rq_2xx", "value": total - 3},
            {"name": f"{cluster}.upstream_rq_5xx", "value": 3},
            {"name": f"{cluster}.upstream_cx_total", "value": 10},
            {"name": f"{cluster}.upstream_cx_tx_bytes_total", "value": total * 200},
            {"name": f"{cluster}.upstream_cx_rx_bytes_total", "value": total * 900},
        ]
        buckets = [
            {"upper_bound": b, "cumulative": min(total, int(total * (i + 1) / 8))}
            for i, b in enumerate(BOUNDS)
        ]
        histograms.append({"name": f"{cluster}.upstream_rq_time", "buckets": buckets})
    stats.append({"histograms": histograms})
    return json.dumps({"stats": stats}).encode()


async def _serve(directory: Path, count: int, ready: Connection) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = bodies[writer.get_extra_info("sockname")]
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    bodies: dict[str, bytes] = {}
    servers = []
    for i in range(count):
        path = str(directory / f"{i}.sock")
        bodies[path] = stats_body(i)
        servers.append(await asyncio.start_unix_server(answer, path))
    ready.send("ready")
    await asyncio.Event().wait()


def _server_main(directory: str, count: int, ready: Connection) -> None:
    asyncio.run(_serve(Path(directory), count, ready))


def measure(directory: Path, count: int, rounds: int) -> dict[str, float]:
    proxies = [
        ProxyAdmin(WorkloadRef(f"w-{i}", "default"), "workload", str(directory / f"{i}.sock"))
        for i in range(count)
    ]
    scraper = Scraper(lambda: proxies, lambda proxy: "caller.default")

    async def run() -> tuple[list[float], list[float]]:
        await scraper.scrape_once()  # warm: imports, first connections
        cpu, wall = [], []
        for _ in range(rounds):
            c, w = time.process_time(), time.perf_counter()
            await scraper.scrape_once()
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - w)
        return cpu, wall

    cpu, wall = asyncio.run(run())
    assert scraper.errors == 0, scraper.last_errors
    assert len(scraper.signals.latest) == count * DESTINATIONS
    return {
        "proxies": count,
        "cpu_s": statistics.median(cpu),
        "wall_s": statistics.median(wall),
        "share": statistics.median(cpu) / SCRAPE_INTERVAL_S,
    }


def parse_only(count: int, rounds: int) -> float:
    bodies = [json.loads(stats_body(i)) for i in range(count)]
    times = []
    for _ in range(rounds):
        c = time.process_time()
        for body in bodies:
            destination_traffic(body)
        times.append(time.process_time() - c)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proxies", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="smtel-") as tmp:
        directory = Path(tmp)
        ours, theirs = multiprocessing.Pipe()
        child = multiprocessing.Process(
            target=_server_main, args=(tmp, args.proxies, theirs), daemon=True
        )
        child.start()
        try:
            if not ours.poll(60):
                raise SystemExit("the admin sockets did not come up within 60 s")
            ours.recv()
            one = measure(directory, 1, args.rounds)
            many = measure(directory, args.proxies, args.rounds)
        finally:
            child.terminate()
            child.join(10)
    parse_s = parse_only(args.proxies, args.rounds)
    table = Table(
        title=f"one scrape round, median of {args.rounds}, {DESTINATIONS} destinations each"
    )
    for column in (
        "case",
        "CPU per round",
        "wall per round",
        f"share of a core every {SCRAPE_INTERVAL_S:g}s",
    ):
        table.add_column(column)
    table.add_row(
        "1 proxy (floor)",
        f"{one['cpu_s'] * 1000:.1f} ms",
        f"{one['wall_s'] * 1000:.1f} ms",
        f"{one['share']:.2%}",
    )
    table.add_row(
        f"1 proxy x {args.proxies}",
        f"{one['cpu_s'] * args.proxies * 1000:.0f} ms",
        "-",
        f"{one['share'] * args.proxies:.2%}",
    )
    table.add_row(
        f"{args.proxies} proxies",
        f"{many['cpu_s'] * 1000:.0f} ms",
        f"{many['wall_s'] * 1000:.0f} ms",
        f"{many['share']:.2%}",
    )
    table.add_row(
        f"parse only, {args.proxies} bodies",
        f"{parse_s * 1000:.0f} ms",
        "-",
        f"{parse_s / SCRAPE_INTERVAL_S:.2%}",
    )
    console.print(table)
    ok = many["share"] < TARGET_SHARE
    print(
        f"telemetry: {args.proxies} proxies every {SCRAPE_INTERVAL_S:g}s cost "
        f"{many['share']:.1%} of a core (target < {TARGET_SHARE:.0%})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
