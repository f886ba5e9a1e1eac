"""Distributed tracing through the bookinfo demo, run by ``sidemesh up`` with real
Envoys: one product-page request is one trace, with a span from every proxy on its
path (the gateway, then a server span where the request enters each workload and a
client span where each call leaves one), each child linked to its parent, as
``/v1/traces`` and ``sidemesh traces`` / ``sidemesh trace ID`` show it."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx

from tests.e2e.test_local import Up, bookinfo  # noqa: F401 (a fixture)

CALLS_RATINGS = ("reviews-v2", "reviews-v3")


def _trace(up: Up, trace_id: str) -> dict[str, Any]:
    """Trace ``trace_id`` once its spans have all arrived (proxies export on their own
    schedules)."""
    deadline = time.monotonic() + 20
    while True:
        answer = httpx.get(f"{up.api}/v1/traces/{trace_id}", timeout=5)
        if answer.status_code == 200 and _complete(answer.json()):
            trace: dict[str, Any] = answer.json()
            return trace
        assert time.monotonic() < deadline, f"no complete trace {trace_id}: {answer.text}"
        time.sleep(0.5)


def _complete(trace: dict[str, Any]) -> bool:
    services = {s["service"] for s in trace["spans"]}
    needed = {"ingress", "productpage", "details", "reviews"}
    reviews = [s for s in trace["spans"] if s["service"] == "reviews" and s["kind"] == "server"]
    if reviews and (reviews[0]["workload"] or "").startswith(CALLS_RATINGS):
        needed.add("ratings")
    # The gateway's span, then per service it reaches a server span, and per call a
    # workload makes a client span.
    return needed <= services and len(trace["spans"]) == 2 * len(needed) - 2


def test_one_product_page_request_is_one_trace_across_every_service(
    bookinfo: Up,  # noqa: F811
) -> None:
    # The caller outside the mesh started the trace: the mesh's spans join it.
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    page = httpx.get(
        f"http://127.0.0.1:{bookinfo.gateway_port}/productpage",
        headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
        timeout=10,
    )
    assert page.status_code == 200
    trace = _trace(bookinfo, trace_id)
    spans = {s["spanId"]: s for s in trace["spans"]}
    root = trace["spans"][0]
    assert (root["service"], root["parentSpanId"], trace["rootService"]) == (
        "ingress",
        caller_span,
        "ingress",
    )
    # Every other span's parent is in the trace: the request entered a workload under
    # the call that reached it, and left it under the request the app was serving.
    for span in trace["spans"][1:]:
        parent = spans[span["parentSpanId"]]
        if span["kind"] == "server":
            assert parent["kind"] == "client" or parent["service"] == "ingress", span
        else:
            assert parent["kind"] == "server" and parent["service"] == span["service"], span
        assert parent["startTimeUnixNano"] <= span["startTimeUnixNano"]
    servers = {s["service"]: s for s in trace["spans"] if s["kind"] == "server"}
    calls = {
        (spans[s["parentSpanId"]]["service"], s["service"])
        for s in trace["spans"][1:]
        if s["kind"] == "server"
    }
    assert {("ingress", "productpage"), ("productpage", "details"), ("productpage", "reviews")} <= (
        calls
    )
    if "ratings" in servers:
        assert ("reviews", "ratings") in calls
    assert trace["error"] is False
    assert all(s["statusCode"] == 200 for s in trace["spans"])

    listed = bookinfo.sidemesh("traces", "--service", "details")
    assert listed.returncode == 0, listed.stderr
    assert trace_id in listed.stdout
    shown = bookinfo.sidemesh("trace", trace["traceId"])
    assert shown.returncode == 0, shown.stderr
    for name in ("ingress", "productpage", "details", "reviews", "█"):
        assert name in shown.stdout
    missing = bookinfo.sidemesh("trace", "0" * 32)
    assert missing.returncode == 1 and f"no trace {'0' * 32}" in missing.stderr
