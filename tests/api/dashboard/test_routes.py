"""The dashboard's routes on a real control plane (uvicorn, no proxies connected): the
page and its two assets and nothing else from disk, typed overview in OpenAPI, the
graph as SVG, the event stream."""

from __future__ import annotations

import httpx

from tests.api.test_app import api  # noqa: F401 (a fixture)


def test_the_page_and_its_assets_and_nothing_else(api: str) -> None:  # noqa: F811
    page = httpx.get(f"{api}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/ui/app.js">' in page.text
    assert httpx.get(f"{api}/ui/app.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{api}/ui/style.css").status_code == 200
    for name in ("index.html", "..%2F..%2Fpyproject.toml", "missing.js"):
        assert httpx.get(f"{api}/ui/{name}").status_code == 404, name


def test_the_overview_is_typed_and_documented(api: str) -> None:  # noqa: F811
    overview = httpx.get(f"{api}/v1/dashboard/overview").json()
    assert overview["meshVersion"] == 1 and overview["refusedEdit"] is None
    assert overview["convergence"] == {
        "meshVersion": 1,
        "applied": 0,
        "connected": 0,
        "rejected": [],
    }
    schemas = httpx.get(f"{api}/openapi.json").json()["components"]["schemas"]
    assert {"Overview", "Convergence", "Detail", "FailedRequest"} <= set(schemas)


def test_the_graph_is_svg_with_every_service_as_a_node(api: str) -> None:  # noqa: F811
    reply = httpx.get(f"{api}/v1/dashboard/graph.svg?window=1m")
    assert reply.headers["content-type"] == "image/svg+xml"
    assert 'data-id="reviews.other"' in reply.text
    assert httpx.get(f"{api}/v1/dashboard/graph.svg?window=2h").status_code == 400


def test_the_event_stream_sends_the_overview(api: str) -> None:  # noqa: F811
    with httpx.stream("GET", f"{api}/v1/events", timeout=5) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == "event: overview"
        assert next(lines).startswith('data: {"meshVersion":1')
