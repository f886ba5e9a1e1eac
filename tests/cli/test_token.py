"""``sidemesh token create``: a workload's bootstrap token for another host, the same on
every call, kept by the control plane's state directory and accepted by its CA."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from sidemesh.identity.tokens import BootstrapTokens
from sidemesh.model.refs import WorkloadRef


def _token(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidemesh", "token", "create", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_token_is_made_once_and_the_control_plane_accepts_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = _token("--workload", "reviews-1", "--state-dir", str(state))
    assert first.returncode == 0, first.stderr
    again = _token("--workload", "reviews-1", "--state-dir", str(state))
    assert again.stdout == first.stdout
    token = first.stdout.strip()
    assert BootstrapTokens(state / "tokens").check(token) == WorkloadRef("reviews-1", "default")


def test_a_token_written_to_a_file_is_for_its_owner_only(tmp_path: Path) -> None:
    out = tmp_path / "reviews-1.default.token"
    done = _token(
        "--workload", "reviews-1", "--state-dir", str(tmp_path / "state"), "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert done.stdout == ""
