"""AuthorizationPolicy enforced by real Envoy sidecars over real mTLS: an allowed
identity is served, another gets 403 naming the rule in the callee's access log and
counters; plaintext never reaches a STRICT service's app; and a DENY on ``/admin``
cannot be slipped past by any spelling of the path, host or a repeated header (each
attempt is sent byte for byte on a raw socket, and the app records what it served)."""

from __future__ import annotations

import json
import re
import socket
import textwrap
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from sidemesh.envoy.explain import Request, explain
from tests.helpers.harness import Mesh
from tests.helpers.net import free_port
from tests.helpers.traffic import BackgroundLoad

TRUST = "test.local"


def _policy(name: str, spec: str) -> str:
    return (
        textwrap.dedent(
            f"""
        apiVersion: sidemesh.io/v1alpha1
        kind: AuthorizationPolicy
        metadata: {{name: {name}}}
        spec:
        """
        )
        + textwrap.indent(textwrap.dedent(spec).strip(), "  ")
        + "\n"
    )


ALLOW_A = _policy(
    "b-callers",
    f"""
    targetRefs: [{{name: b}}]
    action: ALLOW
    rules:
      - from: [{{source: {{principals: ["{TRUST}/ns/default/sa/a"]}}}}]
      - from: [{{source: {{principals: ["{TRUST}/ns/default/sa/c"]}}}}]
        to: [{{operation: {{paths: ["/public", "/public/*"]}}}}]
      - from: [{{source: {{principals: ["{TRUST}/ns/default/sa/c"]}}}}]
        to: [{{operation: {{paths: ["/admin", "/admin/*"]}}}}]
    """,
)

DENY_ADMIN = _policy(
    "b-admin",
    f"""
    targetRefs: [{{name: b}}]
    action: DENY
    rules:
      - from: [{{source: {{notPrincipals: ["{TRUST}/ns/default/sa/a"]}}}}]
        to: [{{operation: {{paths: ["/admin", "/admin/*"]}}}}]
      - to: [{{operation: {{hosts: [secret.local]}}}}]
      - when: [{{key: "request.headers[x-role]", values: [intruder]}}]
    """,
)

BYPASSES = [
    "/admin",
    "/admin/",
    "/ADMIN",
    "//admin",
    "/./admin",
    "/public/../admin",
    "/%61dmin",
    "/admin%2Fx",
    "/admin%2fx",
    "/%2e/admin",
    "/admin%00",
    "/admin;x",
    "/admin#frag",
    "/admin?x=1",
    "/admin%5Cx",
]


@pytest.fixture
def mesh(tmp_path: Path) -> Mesh:
    """a-1 and c-1 call b-1; c-1 also reaches b on a local port that passes its Host
    header as sent. b's app records every request it serves."""
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    c = mesh.add("c-1", "c")
    c.upstreams = {"b": free_port()}
    mesh.add("b-1", "b")
    mesh.extra_services = [{"name": "c", "ports": [{"port": 7070}]}]
    mesh.policies = [ALLOW_A, DENY_ADMIN]
    return mesh


def _start(mesh: Mesh, seen: list[dict[str, str]]) -> None:
    mesh.start_all({"b-1": {"seen": seen}})


def _raw(port: int, target: str, host: str = "b", extra: str = "") -> int:
    """Send ``GET <target>`` exactly as written; the status of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def _explained(mesh: Mesh, caller: str, path: str, host: str = "b", **options: object) -> int:
    """What ``sidemesh explain`` says the caller gets, from the control plane's state."""
    assert mesh.control_plane is not None
    aggregator = mesh.control_plane.control_plane.aggregator
    state = mesh.control_plane.call(lambda: aggregator.state)
    assert state is not None
    found = explain(state, Request(caller, host, "GET", path, **options))  # type: ignore[arg-type]
    if found.status is not None:
        return found.status
    (backend,) = found.backends
    return backend.status or 200


def _stats(mesh: Mesh, workload: str, pattern: str) -> dict[str, int]:
    text = mesh.workloads[workload].admin("/stats", {"filter": pattern}).text
    return {
        name: int(value)
        for name, _, value in (line.partition(": ") for line in text.splitlines())
        if value.isdigit()
    }


def test_an_allowed_identity_is_served_and_another_is_refused_naming_the_rule(
    mesh: Mesh,
) -> None:
    seen: list[dict[str, str]] = []
    _start(mesh, seen)
    assert mesh.request("a-1", "b", "/anything").status_code == 200
    assert mesh.request("c-1", "b", "/public/page").status_code == 200
    refused = mesh.request("c-1", "b", "/private")
    assert refused.status_code == 403
    assert "b-callers" not in refused.text  # the caller learns nothing of the policy
    assert [r["path"] for r in seen].count("/private") == 0
    assert _explained(mesh, "c-1", "/private") == 403
    assert _explained(mesh, "c-1", "/public/page") == 200
    assert _explained(mesh, "a-1", "/anything") == 200

    # The callee's access log names the decision; its counters count it.
    deadline = time.monotonic() + 5
    while "rbac_access_denied_matched_policy" not in mesh.sidecar_log("b-1"):
        assert time.monotonic() < deadline, "no access log line for the 403"
        time.sleep(0.1)
    lines = [
        json.loads(line[line.index("{") :])
        for line in mesh.sidecar_log("b-1").splitlines()
        if '"log":"access"' in line.replace(" ", "")
    ]
    denied = next(line for line in lines if line["path"] == "/private")
    assert denied["status"] == 403
    assert denied["responseCodeDetails"] == "rbac_access_denied_matched_policy[none]"
    assert denied["peer"] == f"spiffe://{TRUST}/ns/default/sa/c"
    counters = _stats(mesh, "b-1", "rbac")
    assert any(k.endswith("rbac.allow.denied") and v >= 1 for k, v in counters.items()), counters
    assert any("rbac.allow.policy.default/b-callers/rule-0.allowed" in k for k in counters), (
        counters
    )

    # Plaintext to b's STRICT endpoint never reaches the app.
    served = len(seen)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{mesh.workloads['b-1'].port}/", timeout=5)
    assert len(seen) == served


def test_no_spelling_of_a_denied_path_host_or_header_reaches_the_app(mesh: Mesh) -> None:
    seen: list[dict[str, str]] = []
    _start(mesh, seen)
    outbound = mesh.workloads["c-1"].outbound_port
    upstream = mesh.workloads["c-1"].upstreams["b"]
    seen.clear()  # the start's own probe
    assert _raw(outbound, "/public/ok") == 200  # the app is there
    assert len(seen) == 1

    answers = {path: _raw(outbound, path) for path in BYPASSES}
    print(answers)
    assert all(status in (400, 403, 404) for status in answers.values()), answers
    for host in ("secret.local", "SECRET.local", "secret.local:80", "secret.local."):
        assert _raw(upstream, "/public/ok", host=host) == 403, host
        assert _explained(mesh, "c-1", "/public/ok", authority=host) == 403, host
    assert _raw(outbound, "/public/ok", extra="x-role: user\r\nx-role: intruder\r\n") == 403
    assert _raw(outbound, "/public/ok", extra="x-role: intruder,user\r\n") == 403
    assert _raw(outbound, "/public/ok", extra="x_role: intruder\r\n") == 400
    assert [r["path"] for r in seen] == ["/public/ok"], seen

    # The one identity the DENY spares reaches /admin; a's other paths too.
    assert _raw(mesh.workloads["a-1"].outbound_port, "/admin") == 200
    assert re.fullmatch(r"/admin", seen[-1]["path"])

    # sidemesh explain agrees with the mesh on every one of these requests.
    explained = {path: _explained(mesh, "c-1", path) for path in BYPASSES}
    assert explained == answers, (explained, answers)
    assert _explained(mesh, "c-1", "/public/ok") == 200
    assert _explained(mesh, "a-1", "/admin") == 200
    headers = {"x-role": "user,intruder"}
    assert _explained(mesh, "c-1", "/public/ok", headers=headers) == 403
    assert _explained(mesh, "c-1", "/public/ok", headers={"x_role": "intruder"}) == 400


def test_a_permissive_service_lets_plaintext_in_only_where_no_rule_needs_an_identity(
    tmp_path: Path,
) -> None:
    """Incremental adoption: a PERMISSIVE service accepts plaintext callers, but a rule
    that requires an identity never admits one; the API says which services are STRICT
    and which policies cover them."""
    mesh = Mesh(tmp_path)
    mesh.add("a-1", "a")
    mesh.add("b-1", "b")
    mesh.service_mtls = {"b": "PERMISSIVE"}
    mesh.policies = [
        _policy(
            "b-open-part",
            f"""
            targetRefs: [{{name: b}}]
            rules:
              - from: [{{source: {{principals: ["{TRUST}/ns/default/sa/a"]}}}}]
              - to: [{{operation: {{paths: ["/open/*"]}}}}]
            """,
        )
    ]
    seen: list[dict[str, str]] = []
    _start(mesh, seen)
    plaintext = f"http://127.0.0.1:{mesh.workloads['b-1'].port}"
    assert httpx.get(f"{plaintext}/private", timeout=5).status_code == 403
    assert httpx.get(f"{plaintext}/open/page", timeout=5).status_code == 200
    assert mesh.request("a-1", "b", "/private").status_code == 200  # over mTLS, as a
    services = {s["name"]: s for s in mesh.api("/v1/state")["services"]}
    assert services["b"]["mtlsMode"] == "PERMISSIVE"
    assert services["b"]["authorizationPolicies"] == ["b-open-part"]
    assert services["a"]["mtlsMode"] == "STRICT" and services["a"]["authorizationPolicies"] == []


def test_a_policy_edit_applies_within_a_second_and_fails_no_allowed_request(
    mesh: Mesh,
) -> None:
    """Under bounded load from a (allowed throughout), c is cut off by an edit: c's
    next requests are refused within a second, none of a's fails."""
    seen: list[dict[str, str]] = []
    _start(mesh, seen)
    url = f"http://127.0.0.1:{mesh.workloads['a-1'].outbound_port}/anything"
    with BackgroundLoad(url, headers={"Host": "b"}, threads=2, pause_s=0.01) as load:
        time.sleep(1.0)
        assert mesh.request("c-1", "b", "/public/x").status_code == 200
        mesh.policies = [
            _policy(
                "b-callers",
                f"""
                targetRefs: [{{name: b}}]
                rules: [{{from: [{{source: {{principals: ["{TRUST}/ns/default/sa/a"]}}}}]}}]
                """,
            ),
            DENY_ADMIN,
        ]
        edited = time.monotonic()
        mesh.write()
        while mesh.request("c-1", "b", "/public/x").status_code != 403:
            assert time.monotonic() - edited < 5, "the edit never applied"
            time.sleep(0.02)
        applied = time.monotonic() - edited
        time.sleep(1.0)
    print(f"the edit applied in {applied:.3f}s; a's requests: {load.answers()}")
    assert applied < 1.0
    assert load.failures_since(0) == Counter()
    assert len(load.outcomes) > 50
