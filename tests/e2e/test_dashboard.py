"""The dashboard in a real browser: Debian's Chromium, driven by Playwright (with
``executable_path``, no browser download), against the bookinfo demo run by ``sidemesh
up`` with real Envoys. The graph shows exactly the demo's services and calls, with
non-zero rates after a bounded load; a killed reviews app turns its node amber or red; a
bad edit of mesh.yaml shows with its field path; the convergence banner appears after an
edit and clears. The browser asks nothing of any host but the control plane. Screenshots
of each view land in ``.test-artifacts/dashboard/`` (``SIDEMESH_TEST_ARTIFACTS``)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from tests.e2e.test_local import ROOT, Up, _up_args
from tests.helpers.net import free_port
from tests.helpers.traffic import BackgroundLoad

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(os.environ.get("SIDEMESH_TEST_ARTIFACTS", ROOT / ".test-artifacts")) / "dashboard"
DEMO_EDGES = {
    ("ingress.default", "productpage.default"),
    ("productpage.default", "details.default"),
    ("productpage.default", "reviews.default"),
    ("reviews.default", "ratings.default"),
}


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Up, Path]]:
    """The bookinfo demo from a copy of its directory, so the test may edit mesh.yaml."""
    copy = tmp_path / "bookinfo"
    shutil.copytree(ROOT / "examples" / "bookinfo", copy)
    gateway_port = free_port()
    monkeypatch.setenv("SIDEMESH_DEMO_PORT", str(gateway_port))
    args, api = _up_args(tmp_path / "run", copy / "mesh.yaml")
    up = Up(tmp_path / "run", api, gateway_port, args)
    started = up.sidemesh(*args, "-d")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield up, copy / "mesh.yaml"
    finally:
        up.sidemesh("down", "--runtime-dir", str(up.runtime_dir))


def _wait(what: str, check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _edges(page: Page) -> dict[tuple[str, str], dict[str, str]]:
    """The graph's edges as drawn now (read in one go: the page redraws it every 2 s)."""
    drawn = page.evaluate(
        """() => [...document.querySelectorAll("#graph-canvas .edge")].map((e) => [
            e.dataset.source, e.dataset.destination,
            e.querySelector(".edge-label").textContent, e.dataset.mtls])"""
    )
    return {(a, b): {"label": label, "mtls": mtls} for a, b, label, mtls in drawn}


def _health(page: Page, node: str) -> str:
    found: str = (
        page.evaluate(
            "(id) => document.querySelector(`#graph-canvas .node[data-id='${id}']`)?.dataset.health",
            node,
        )
        or ""
    )
    return found


def test_the_dashboard_shows_the_demo_live(demo: tuple[Up, Path]) -> None:
    up, mesh_file = demo
    origin = up.api
    state = httpx.get(f"{origin}/v1/state", timeout=5).json()
    services = {f"{s['name']}.{s['namespace']}" for s in state["services"]}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        started = time.monotonic()
        page.goto(f"{origin}/#graph")
        page.wait_for_selector("#graph-canvas svg .node")
        first_paint = time.monotonic() - started
        nodes = set(
            page.evaluate(
                """() => [...document.querySelectorAll("#graph-canvas .node")]
                    .map((n) => n.dataset.id)"""
            )
        )
        assert nodes == services | {"ingress.default"}

        page.select_option("#window", "10s")
        url = f"http://127.0.0.1:{up.gateway_port}/productpage"
        with BackgroundLoad(url, threads=2, pause_s=0.05) as load:
            _wait("traffic", lambda: len(load.outcomes) >= 20)

            def every_edge_has_traffic() -> bool:
                edges = _edges(page)
                return set(edges) == DEMO_EDGES and all(
                    not e["label"].startswith("0.0 rps") for e in edges.values()
                )

            _wait("every demo edge with requests/s", every_edge_has_traffic)
            assert all(e["mtls"] == "true" for e in _edges(page).values())
            page.locator('#graph-canvas .node[data-id="reviews.default"]').click()
            page.wait_for_selector("#detail h3")
            _shot(page, "graph")

            reviews = {w["name"]: w for w in up.workloads().values() if w["service"] == "reviews"}
            os.kill(reviews["reviews-v2-1"]["app"]["pid"], signal.SIGKILL)
            _wait(
                "reviews amber or red",
                lambda: _health(page, "reviews.default") in ("degraded", "failing"),
                timeout=20,
            )
        _shot(page, "graph-reviews-killed")

        page.select_option("#by", "workload")
        page.wait_for_selector('#graph-canvas .node[data-kind="workload"]')
        workloads = page.evaluate(
            """() => [...document.querySelectorAll('#graph-canvas .node[data-kind="workload"]')]
                .map((n) => n.dataset.id)"""
        )
        assert "productpage-v1.default" in workloads
        assert {w for w in workloads if w.startswith("reviews-v")} <= {
            f"reviews-v{v}-{i}.default" for v in (2, 3) for i in (1, 2)
        }
        _shot(page, "graph-by-workload")
        page.select_option("#by", "service")

        page.goto(f"{origin}/#workloads")
        page.wait_for_selector("#workloads-table tr[data-node]")
        assert page.locator("#workloads-table tr[data-node]").count() == len(state["workloads"]) + 1
        _shot(page, "workloads")

        page.goto(f"{origin}/#traces")
        page.wait_for_selector("#traces-table tr[data-trace]")
        page.locator("#traces-table tr[data-trace]").first.click()
        page.wait_for_selector(".waterfall .span-row")
        _shot(page, "traces")

        good = mesh_file.read_text()
        mesh_file.write_text(good.replace("ports: [{port: 9080}]", "ports: [{port: 70000}]", 1))
        page.goto(f"{origin}/#config")
        page.wait_for_selector("#refused:not([hidden])", timeout=20_000)
        refused = page.locator("#refused").inner_text()
        assert "services[0].ports[0].port" in refused, refused
        _shot(page, "config-refused-edit")

        mesh_file.write_text(
            good.replace("randomSamplingPercentage: 100", "randomSamplingPercentage: 50")
        )
        page.wait_for_selector("#banner:not([hidden])", timeout=20_000)
        assert "applied to" in page.locator("#banner").inner_text()
        page.wait_for_selector("#refused", state="hidden", timeout=20_000)
        page.wait_for_selector("#banner", state="hidden", timeout=30_000)
        browser.close()
    hosts = {request.split("/")[2] for request in asked}
    assert hosts == {origin.split("/")[2]}, hosts
    print(f"first paint of the graph: {first_paint * 1000:.0f} ms")
    assert first_paint < 1.0
