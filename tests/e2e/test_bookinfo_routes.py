"""The README's routing tour on bookinfo, run by ``sidemesh up`` from a copy of
examples/bookinfo: policies copied into routes/ apply to the running mesh (an A/B
route by header, a canary split, a fault for one user) and removing them undoes them.
Real processes, real Envoy sidecars, real mTLS."""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_local import ROOT, Up, running_up
from tests.helpers.net import free_port

BOOKINFO = ROOT / "examples" / "bookinfo"
SERVED_BY = re.compile(r"reviews served by reviews-(v[123])-[12]")


@pytest.fixture
def bookinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Up, Path]]:
    copy = tmp_path / "bookinfo"
    shutil.copytree(BOOKINFO, copy, ignore=shutil.ignore_patterns("*.yaml", "__pycache__"))
    shutil.copy(BOOKINFO / "mesh.yaml", copy / "mesh.yaml")
    shutil.copytree(BOOKINFO / "policies", copy / "policies", dirs_exist_ok=True)
    gateway = free_port()
    monkeypatch.setenv("SIDEMESH_DEMO_PORT", str(gateway))
    with running_up(tmp_path / "run", copy / "mesh.yaml", gateway) as up:
        yield up, copy


def _version(up: Up, user: str | None = None) -> str:
    headers = {"end-user": user} if user else {}
    page = httpx.get(f"http://127.0.0.1:{up.gateway_port}/productpage", headers=headers, timeout=10)
    assert page.status_code == 200
    found = SERVED_BY.search(page.text)
    return found.group(1) if found else "none"


def _until(what: str, done: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not {what} after {timeout:.0f}s"
        time.sleep(0.2)


def test_the_routing_tour_applies_and_undoes_routes_on_a_running_mesh(
    bookinfo: tuple[Up, Path],
) -> None:
    up, copy = bookinfo
    assert {_version(up) for _ in range(30)} == {"v1", "v2", "v3"}  # round robin

    shutil.copy(copy / "policies" / "reviews-jason.yaml", copy / "routes")
    _until("jason on v2", lambda: all(_version(up, "jason") == "v2" for _ in range(5)))
    assert {_version(up, "jason") for _ in range(20)} == {"v2"}
    assert {_version(up, "alice") for _ in range(20)} == {"v1"}
    assert {_version(up) for _ in range(20)} == {"v1"}

    (copy / "routes" / "reviews-jason.yaml").unlink()
    shutil.copy(copy / "policies" / "reviews-canary.yaml", copy / "routes")
    _until("the canary", lambda: "v2" not in {_version(up) for _ in range(10)})
    split = Counter(_version(up) for _ in range(300))
    print(f"canary 90/10 over 300 pages: {split}")
    assert set(split) <= {"v1", "v3"} and 0.8 <= split["v1"] / 300 <= 0.97

    # The fault for jason, who is on v2 again (v1 does not call ratings at all).
    (copy / "routes" / "reviews-canary.yaml").unlink()
    shutil.copy(copy / "policies" / "reviews-jason.yaml", copy / "routes")
    shutil.copy(copy / "policies" / "ratings-delay.yaml", copy / "routes")
    _until(
        "the fault applied",
        lambda: any(
            p["metadata"]["name"] == "ratings-delay"
            for p in httpx.get(f"{up.api}/v1/state", timeout=5).json()["policies"]
        ),
    )
    state = httpx.get(f"{up.api}/v1/state", timeout=5).json()
    assert state["source"]["lastError"] is None and state["warnings"] == []
    started = time.monotonic()
    for _ in range(3):
        _version(up, "alice")
    alice = (time.monotonic() - started) / 3
    started = time.monotonic()
    jason_page = httpx.get(
        f"http://127.0.0.1:{up.gateway_port}/productpage", headers={"end-user": "jason"}, timeout=10
    )
    jason = time.monotonic() - started
    print(f"with the ratings delay: alice's page {alice:.2f}s, jason's {jason:.2f}s")
    assert jason >= 1.9 and alice < 1.0
    # The apps' own 2 s timeouts then show, as in Istio's bookinfo fault demo.
    assert "unavailable" in jason_page.text
