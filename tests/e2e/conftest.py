"""End-to-end fixtures: a mesh with real Envoy sidecars on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.harness import Mesh

PARALLEL = {
    "test_access_log",
    "test_authentication",
    "test_authorization",
    "test_bad_config",
    "test_bookinfo_routes",
    "test_dashboard",
    "test_demo",
    "test_egress",
    "test_gateway_api",
    "test_local",
    "test_on_demand",
    "test_tracing",
    "test_traffic",
    "test_transparent_capture",
}
"""Modules that check what the mesh does, not how fast or how reliably under load: they
may run two at a time (``make test`` runs them with ``-n 2 -m parallel``). The rest
measure failover, latency or success rates under load, and run alone."""
BOOKINFO = {"test_bookinfo_routes", "test_dashboard", "test_demo", "test_tracing"}
"""They run the bookinfo demo (the demo's own ports among them): one at a time."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            module = Path(str(item.fspath)).stem
            if module in PARALLEL:
                item.add_marker(pytest.mark.parallel)
            if module in BOOKINFO:
                item.add_marker(pytest.mark.xdist_group("bookinfo"))


@pytest.fixture(autouse=True)
def close_every_mesh() -> Iterator[None]:
    """Stop the processes of every mesh the test made, fixture or not."""
    yield
    while Mesh.opened:
        Mesh.opened.pop().close()


@pytest.fixture(params=["sotw", "delta"])
def xds_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def mesh(tmp_path: Path, xds_mode: str) -> Iterator[Mesh]:
    """Workloads a-1 (service a) and b-1 (service b); control plane not yet started."""
    m = Mesh(tmp_path, xds_mode)
    m.add("a-1", "a")
    m.add("b-1", "b", version="v1")
    try:
        yield m
    finally:
        m.close()
