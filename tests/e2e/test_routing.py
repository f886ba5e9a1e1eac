"""Gateway API routes and backend policies with real Envoy sidecars and real backends on
127.0.0.1: weighted splits and switches under load, header and path matches, mirrors,
faults, timeouts, outlier detection, health checks and circuit breaking."""

from __future__ import annotations

import textwrap
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers.harness import Mesh
from tests.helpers.traffic import BackgroundLoad

VERSIONED = [
    {"name": "b-v1", "ports": [{"port": 9080}], "selector": {"version": "v1"}},
    {"name": "b-v2", "ports": [{"port": 9080}], "selector": {"version": "v2"}},
]


def _route(rules: str, name: str = "b-route") -> str:
    return (
        textwrap.dedent(
            f"""
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {{name: {name}}}
        spec:
          parentRefs: [{{group: "", kind: Service, name: b, port: 9080}}]
          rules:
        """
        )
        + textwrap.indent(textwrap.dedent(rules).strip(), "    ")
        + "\n"
    )


def _policy(spec: str) -> str:
    return (
        textwrap.dedent(
            """
        apiVersion: sidemesh.io/v1alpha1
        kind: BackendPolicy
        metadata: {name: b}
        spec:
          targetRefs: [{name: b}]
        """
        )
        + textwrap.indent(textwrap.dedent(spec).strip(), "  ")
        + "\n"
    )


@pytest.fixture
def versioned(tmp_path: Path) -> Mesh:
    """a-1 calls b: b-1 (v1) and b-2 (v2), also services b-v1 and b-v2 by selector."""
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    mesh.add("b-1", "b", version="v1")
    mesh.add("b-2", "b", version="v2")
    mesh.extra_services = list(VERSIONED)
    return mesh


def _start(mesh: Mesh, answering: bool = True, **apps: dict[str, object]) -> None:
    """``answering``: wait until a-1 gets a 200 from b (not when b is made to fail)."""
    mesh.start_control_plane()
    for name in mesh.workloads:
        mesh.start_app(name, **apps.get(name.replace("-", "_"), {}))  # type: ignore[arg-type]
        mesh.start_sidecar(name)
    mesh.wait_synced()
    if answering:
        mesh.wait_for_route("a-1", "b")


def _who(mesh: Mesh, path: str = "/", headers: dict[str, str] | None = None) -> str:
    port = mesh.workloads["a-1"].outbound_port
    reply = httpx.get(
        f"http://127.0.0.1:{port}{path}", headers={"Host": "b", **(headers or {})}, timeout=10
    )
    return str(reply.json()["workload"]) if reply.status_code == 200 else str(reply.status_code)


def test_a_90_10_split_lands_within_3_points_and_a_switch_takes_a_second_with_no_error(
    versioned: Mesh,
) -> None:
    split = """
        - backendRefs:
            - {name: b-v1, port: 9080, weight: %d}
            - {name: b-v2, port: 9080, weight: %d}
    """
    versioned.policies = [_route(split % (90, 10))]
    _start(versioned)
    port = versioned.workloads["a-1"].outbound_port
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=10, headers={"Host": "b"}) as client:
        for _ in range(2000):
            reply = client.get(f"http://127.0.0.1:{port}/")
            assert reply.status_code == 200, reply.text
            seen[reply.json()["workload"]] += 1
    share = seen["b-1"] / 2000 * 100
    print(f"90/10 split over 2,000 requests: {seen} ({share:.1f}% to v1)")
    assert 87 <= share <= 93

    # Blue-green: 0/100 under bounded load; every request after a second goes to v2.
    with BackgroundLoad(f"http://127.0.0.1:{port}/", {"Host": "b"}) as load:
        time.sleep(0.5)
        versioned.policies = [_route(split % (0, 100))]
        edited = time.monotonic()
        versioned.write()  # returns once the control plane took the edit
        time.sleep(2)
    outcomes = [(o.at, o.what) for o in load.outcomes]
    failures = [who for _, who in outcomes if who not in ("b-1", "b-2")]
    late = [t - edited for t, who in outcomes if who == "b-1" and t > edited]
    switched_s = max(late, default=0.0)
    print(
        f"switch: {len(outcomes)} requests, {len(failures)} failed, last to v1 {switched_s:.3f}s after the edit"
    )
    assert failures == []
    assert switched_s < 1.0
    assert all(who == "b-2" for t, who in outcomes if t > edited + 1.0)


def test_a_header_sends_jason_to_v2_and_a_prefix_keeps_to_segments(versioned: Mesh) -> None:
    versioned.policies = [
        _route(
            """
            - matches: [{headers: [{name: end-user, value: jason}]}]
              backendRefs: [{name: b-v2, port: 9080}]
            - matches: [{path: {type: PathPrefix, value: /v2}}]
              backendRefs: [{name: b-v2, port: 9080}]
            - backendRefs: [{name: b-v1, port: 9080}]
            """
        )
    ]
    _start(versioned)
    assert {_who(versioned, headers={"end-user": "jason"}) for _ in range(20)} == {"b-2"}
    assert {_who(versioned, headers={"end-user": "alice"}) for _ in range(20)} == {"b-1"}
    assert _who(versioned, "/v2") == "b-2" and _who(versioned, "/v2/reviews") == "b-2"
    assert _who(versioned, "/v2example") == "b-1"


def test_a_mirror_gets_copies_and_a_slow_mirror_does_not_slow_the_caller(
    versioned: Mesh,
) -> None:
    mirrored: list[dict[str, str]] = []
    versioned.policies = [
        _route(
            """
            - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: b-v2, port: 9080}}}]
              backendRefs: [{name: b-v1, port: 9080}]
            """
        )
    ]
    _start(versioned, b_2={"delay_s": 1.0, "seen": mirrored})
    started = time.monotonic()
    answers = {_who(versioned, f"/copy/{i}") for i in range(10)}
    elapsed = time.monotonic() - started
    assert answers == {"b-1"}
    assert elapsed < 3.0, f"10 requests took {elapsed:.1f}s: the 1 s mirror slowed the caller"
    deadline = time.monotonic() + 10
    while len([m for m in mirrored if m["path"].startswith("/copy/")]) < 10:
        assert time.monotonic() < deadline, mirrored
        time.sleep(0.1)
    copies = sorted(m["path"] for m in mirrored if m["path"].startswith("/copy/"))
    assert copies == sorted(f"/copy/{i}" for i in range(10))
    print(f"10 requests in {elapsed:.2f}s with a 1 s mirror; the mirror saw all 10")


def test_faults_abort_half_the_requests_and_a_delay_shows_in_latency(versioned: Mesh) -> None:
    versioned.policies = [
        _route(
            """
            - matches: [{path: {value: /abort}}]
              filters: [{type: ExtensionRef, extensionRef: {group: sidemesh.io, kind: FaultInjection, name: half}}]
              backendRefs: [{name: b, port: 9080}]
            - matches: [{path: {value: /slow}}]
              filters: [{type: ExtensionRef, extensionRef: {group: sidemesh.io, kind: FaultInjection, name: slow}}]
              backendRefs: [{name: b, port: 9080}]
            - backendRefs: [{name: b, port: 9080}]
            """
        ),
        "apiVersion: sidemesh.io/v1alpha1\nkind: FaultInjection\nmetadata: {name: half}\n"
        "spec: {abort: {httpStatus: 503, percentage: 50}}\n",
        "apiVersion: sidemesh.io/v1alpha1\nkind: FaultInjection\nmetadata: {name: slow}\n"
        "spec: {delay: {fixedDelay: 1s}}\n",
    ]
    _start(versioned)
    outcomes = Counter(_who(versioned, "/abort") for _ in range(400))
    aborted = outcomes["503"] / 400 * 100
    print(f"50% abort over 400 requests: {aborted:.1f}% aborted")
    # Binomial: the standard deviation over 400 requests is 2.5 points; 3 of them
    # either side leaves a correct proxy outside 3 times in 1,000 runs.
    assert 42.5 <= aborted <= 57.5
    started = time.monotonic()
    assert _who(versioned, "/slow") in ("b-1", "b-2")
    slow = time.monotonic() - started
    assert 1.0 <= slow < 2.0, slow
    started = time.monotonic()
    _who(versioned, "/")
    assert time.monotonic() - started < 0.5


def test_a_request_timeout_answers_504_on_time(versioned: Mesh) -> None:
    versioned.policies = [
        _route(
            """
            - timeouts: {request: 500ms}
              backendRefs: [{name: b-v1, port: 9080}]
            """
        )
    ]
    _start(versioned, answering=False, b_1={"delay_s": 3.0})
    started = time.monotonic()
    assert _who(versioned) == "504"
    took = time.monotonic() - started
    print(f"504 after {took:.3f}s (timeout 500ms)")
    assert 0.4 <= took <= 0.6


def test_a_failing_backend_is_ejected_and_every_request_succeeds(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    for i in (1, 2, 3):
        mesh.add(f"b-{i}", "b")
    mesh.policies = [
        _policy(
            """
            outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50}
            """
        )
    ]
    _start(mesh, b_3={"status": 503})
    outcomes = Counter(_who(mesh) for _ in range(1000))
    print(f"1,000 requests with b-3 answering 503: {outcomes}")
    assert outcomes["503"] == 0 and sum(outcomes.values()) == 1000
    stats = mesh.workloads["a-1"].admin("/stats?filter=outbound.9080..b.default.outlier")
    ejected = {
        line.split(": ")[0].rsplit(".", 1)[-1]: int(line.split(": ")[1])
        for line in stats.text.splitlines()
        if line.strip()
    }
    assert ejected.get("ejections_enforced_total", 0) >= 1, stats.text
    assert ejected.get("ejections_active", 0) == 1, stats.text


def test_a_backend_failing_its_health_check_gets_no_traffic(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    for i in (1, 2, 3):
        mesh.add(f"b-{i}", "b")
    mesh.policies = [_policy("healthCheck: {path: /healthz, interval: 1s, timeout: 500ms}")]
    _start(mesh, b_3={"status": 503})
    deadline = time.monotonic() + 20
    while "failed_active_hc" not in mesh.workloads["a-1"].admin("/clusters").text:
        assert time.monotonic() < deadline, "b-3 never failed its health check"
        time.sleep(0.2)
    outcomes = Counter(_who(mesh) for _ in range(200))
    assert set(outcomes) == {"b-1", "b-2"}, outcomes


def test_circuit_breaker_overflow_answers_503_and_is_counted(versioned: Mesh) -> None:
    versioned.policies = [
        _route("- backendRefs: [{name: b-v1, port: 9080}]"),
        textwrap.dedent(
            """
            apiVersion: sidemesh.io/v1alpha1
            kind: BackendPolicy
            metadata: {name: b-v1}
            spec:
              targetRefs: [{name: b-v1}]
              connectionPool: {maxConnections: 1, maxPendingRequests: 1, maxRequests: 1, maxRetries: 0}
            """
        ),
    ]
    _start(versioned, b_1={"delay_s": 0.5})
    with ThreadPoolExecutor(10) as pool:
        outcomes = Counter(pool.map(lambda _: _who(versioned), range(10)))
    print(f"10 concurrent requests through a breaker of 1: {outcomes}")
    assert outcomes["503"] >= 5 and outcomes["b-1"] >= 1
    stats = versioned.workloads["a-1"].admin("/stats?filter=b-v1.default.upstream_.*overflow").text
    overflows = sum(int(line.split(": ")[1]) for line in stats.splitlines() if ": " in line)
    assert overflows >= outcomes["503"], stats


def test_a_rate_limit_answers_429_with_retry_after_and_counts_it(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    mesh.add("b-1", "b")
    mesh.policies = [_policy("rateLimit: {requests: 5, per: 30s}")]
    _start(mesh, answering=False)
    port = mesh.workloads["a-1"].outbound_port
    with httpx.Client(timeout=10, headers={"Host": "b"}) as client:
        replies = [client.get(f"http://127.0.0.1:{port}/") for _ in range(12)]
    codes = Counter(r.status_code for r in replies)
    print(f"12 requests against 5 per 30s: {codes}")
    assert codes == {200: 5, 429: 7}
    assert {r.headers.get("retry-after") for r in replies if r.status_code == 429} == {"30"}
    stats = mesh.workloads["b-1"].admin("/stats?filter=rate_limited").text
    assert any(line.endswith(": 7") for line in stats.splitlines()), stats


def test_a_route_rate_limit_has_its_own_bucket_and_counter(tmp_path: Path) -> None:
    """A login path limited to 2 per 30 s answers 429 on its third request, while the
    service's own bucket (5 per 30 s) is untouched by those and limits the rest."""
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    mesh.add("b-1", "b")
    mesh.policies = [
        _policy(
            """
            rateLimit:
              requests: 5
              per: 30s
              routes:
                - match: {path: {type: PathPrefix, value: /login}, method: POST}
                  requests: 2
                  per: 30s
            """
        )
    ]
    _start(mesh, answering=False)
    port = mesh.workloads["a-1"].outbound_port
    with httpx.Client(timeout=10, headers={"Host": "b"}) as client:
        logins = [client.post(f"http://127.0.0.1:{port}/login/form") for _ in range(4)]
        # A GET of the same path is not the route's: the service's bucket takes it.
        pages = [client.get(f"http://127.0.0.1:{port}/login") for _ in range(6)]
    login_codes = Counter(r.status_code for r in logins)
    page_codes = Counter(r.status_code for r in pages)
    print(f"POST /login/form x4: {login_codes}; GET x6: {page_codes}")
    assert [r.status_code for r in logins] == [200, 200, 429, 429]
    assert logins[-1].headers.get("retry-after") == "30"
    assert page_codes == {200: 5, 429: 1}
    stats = mesh.workloads["b-1"].admin("/stats?filter=rate_limited").text
    counted = {
        line.split(".")[0]: int(line.rsplit(": ", 1)[1])
        for line in stats.splitlines()
        if ": " in line
    }
    assert counted == {"rate_limit_b_default_route-0": 2, "rate_limit_b_default": 1}, stats
