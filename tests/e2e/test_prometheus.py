"""A real Prometheus (Debian's ``prometheus``, installed by ``make test``) scrapes the
control plane's ``/metrics`` and answers PromQL about the mesh's traffic: the requests
per destination service it reports equal the load the test sent."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tests.helpers.harness import Mesh
from tests.helpers.net import free_port

SENT = 150


def _query(url: str, promql: str) -> list[dict]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def _value(url: str, promql: str) -> float | None:
    result = _query(url, promql)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_control_plane_and_counts_the_load(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    assert binary is not None, "no prometheus binary: `make test` installs Debian's prometheus"
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    mesh.add("b-1", "b")
    mesh.start_all()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    assert mesh.control_plane is not None
    api_port = mesh.control_plane.control_plane.api_port
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: sidemesh\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{api_port}']}}]\n"
    )
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    series = (
        'sum by (destination_service) (sidemesh_requests_total{destination_service="b.default"})'
    )
    try:
        deadline = time.monotonic() + 60
        while (before := _value_or_none(url, series)) is None:
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-2000:]
            mesh.request("a-1", "b")
            time.sleep(0.5)
        time.sleep(3)  # the warm-up requests above settle in
        before = _value(url, series) or 0.0
        for _ in range(SENT):
            assert mesh.request("a-1", "b").status_code == 200
        deadline = time.monotonic() + 30
        while True:
            now = _value(url, series) or 0.0
            if now - before >= SENT:
                break
            assert time.monotonic() < deadline, (before, now)
            time.sleep(0.5)
        print(f"Prometheus counted {now - before:.0f} of {SENT} requests to b.default")
        assert abs((now - before) - SENT) <= SENT * 0.01
        rate = _query(url, "sum by (destination_service) (rate(sidemesh_requests_total[30s]))")
        assert {r["metric"]["destination_service"] for r in rate} == {"b.default"}
        assert float(rate[0]["value"][1]) > 0
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def _value_or_none(url: str, promql: str) -> float | None:
    """None until Prometheus answers: while it starts, its API may refuse the
    connection or answer with a plain-text 503 (no JSON)."""
    try:
        return _value(url, promql)
    except (httpx.HTTPError, ValueError):
        return None
