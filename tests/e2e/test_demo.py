"""``make demo`` as the README runs it: the mesh comes up, answers, and Ctrl-C leaves
no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _descendants(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            out |= {int(child)} | _descendants(int(child))
    return out


def test_make_demo_answers_and_stops_cleanly() -> None:
    demo = subprocess.Popen(
        ["make", "demo"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 60
        while "Ctrl-C stops everything." not in "".join(lines):
            assert time.monotonic() < deadline and demo.poll() is None, "".join(lines)
            lines.append(demo.stdout.readline())
        reply = httpx.get("http://127.0.0.1:16101/hello", headers={"Host": "backend"})
        assert reply.json()["workload"] == "backend-1"
        reply = httpx.get("http://backend:9080/x", proxy="http://127.0.0.1:16101")
        answer = reply.json()
        assert (answer["workload"], answer["path"], answer["host"]) == (
            "backend-1",
            "/x",
            "backend:9080",
        )
        # Over mTLS: backend-1's sidecar verified frontend-1's certificate.
        assert answer["xfcc"].endswith("URI=spiffe://example.org/ns/default/sa/frontend")
        assert httpx.get("http://127.0.0.1:15014/healthz").json()["status"] == "ok"
        family = _descendants(demo.pid)
        assert len(family) >= 6  # control plane, 2 apps, 2 agents, 2 Envoys
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in the terminal
        demo.wait(timeout=30)
    time.sleep(0.5)
    leftovers = [pid for pid in family if Path(f"/proc/{pid}").exists()]
    assert leftovers == []
