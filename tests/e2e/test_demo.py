"""``make demo`` exactly as the README runs it: bookinfo comes up, the product page
answers through the mesh over mTLS, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.helpers.net import admin_get
from tests.helpers.processes import alive, descendants

ROOT = Path(__file__).resolve().parents[2]


def _stat(admin_socket: str, pattern: str) -> dict[str, int]:
    text = admin_get(admin_socket, "/stats").text
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if re.fullmatch(pattern, name) and value.strip().isdigit():
            found[name] = int(value)
    return found


def test_make_demo_serves_bookinfo_over_mtls_and_stops_cleanly() -> None:
    demo = subprocess.Popen(
        ["make", "demo"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "COLUMNS": "120"},
    )
    lines: list[str] = []
    family: set[int] = set()
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 120
        while "sidemesh down (or Ctrl-C)" not in "".join(lines):
            assert time.monotonic() < deadline and demo.poll() is None, "".join(lines)
            lines.append(demo.stdout.readline())
        page = httpx.get("http://127.0.0.1:9080/productpage", timeout=10)
        assert page.status_code == 200
        assert "The Comedy of Errors" in page.text
        assert "William Shakespeare" in page.text  # from details
        assert "reviews served by reviews-v" in page.text  # from reviews
        assert "Sorry" not in page.text

        # Traffic between the services is mTLS: reviews' inbound listener saw TLS
        # handshakes and no connection without one.
        state = httpx.get("http://127.0.0.1:15014/v1/state", timeout=5).json()
        proxies = httpx.get("http://127.0.0.1:15014/v1/proxies", timeout=5).json()["proxies"]
        admin_of = {p["node"]: p["adminSocket"] for p in proxies}
        seen_tls = 0
        for _ in range(12):
            httpx.get("http://127.0.0.1:9080/productpage", timeout=10)
        for w in state["workloads"]:
            if w["service"] != "reviews":
                continue
            port, admin = w["ports"][0]["port"], admin_of[f"sidecar~{w['name']}~default"]
            prefix = rf"listener\.127\.0\.0\.1_{port}\."
            handshakes = _stat(admin, prefix + r"ssl\.handshake")
            connections = _stat(admin, prefix + r"downstream_cx_total")
            assert sum(connections.values()) == sum(handshakes.values()), (handshakes, connections)
            seen_tls += sum(handshakes.values())
        assert seen_tls > 0
        _readme_status_matches()
        family = descendants(demo.pid)
        # control plane process, 9 apps, 10 agents, 10 Envoys
        assert len(family) >= 29, len(family)
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in the terminal
        output, _ = demo.communicate(timeout=60)
        lines.append(output)
    assert "sidemesh is down." in "".join(lines)
    _readme_up_matches("".join(lines))
    time.sleep(0.5)
    assert [pid for pid in family if alive(pid)] == []


def _readme_block(after: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text[text.index(after) + len(after) :]
    return block[: block.index("```")].strip().splitlines()


def _readme_up_matches(printed: str) -> None:
    """The README shows what `make demo` prints (the order of the ✓ lines varies)."""
    printed_words = " ".join(printed.split())
    for line in _readme_block("$ make demo"):
        if line.strip() and not line.startswith("✓"):
            assert " ".join(line.split()) in printed_words, line


def _readme_status_matches() -> None:
    """The README shows what `sidemesh status` prints (less the live expiry)."""
    status = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "sidemesh"), "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
    ).stdout
    for line in _readme_block("$ sidemesh status"):
        if "│" in line and "m5" not in line:  # rows, less the live expiry column
            row = line.rsplit("│", 2)[0]
            assert row in status, row
