"""``sidemesh check`` as a user runs it, on a fixture file with planted mistakes and on
a file the control plane would refuse."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PLANTED = Path(__file__).parent.parent / "fixtures" / "check-planted.yaml"


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidemesh", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_check_finds_each_planted_mistake_with_where_and_what_to_do() -> None:
    result = _check("-f", str(PLANTED), "-o", "json")
    assert result.returncode == 0, result.stderr
    findings = {f["where"]: f["problem"] for f in json.loads(result.stdout)["warnings"]}
    expected = {
        "document 5 (HTTPRoute default/to-nothing) spec.rules[0].backendRefs[0].name": (
            "its share of requests is answered 500"
        ),
        "AuthorizationPolicy default/nothing spec.rules": "this DENY matches nothing: add rules",
        "AuthorizationPolicy default/plaintext-on-strict spec.rules[0]": (
            "reviews.default is STRICT: they never get past mTLS"
        ),
        "AuthorizationPolicy default/open-legacy spec.rules[0]": "plaintext callers get in",
        "AuthorizationPolicy default/twice spec.rules[1]": (
            "shadowed: rule 0 of the same policy matches every request this one does"
        ),
        "AuthorizationPolicy default/admins-delete spec.rules[0]": (
            "never allows anything on reviews.default: DENY AuthorizationPolicy "
            "default/no-deletes rule 0 matches every request it does"
        ),
    }
    for where, problem in expected.items():
        assert problem in findings.get(where, ""), (where, findings)
    table = _check("-f", str(PLANTED))
    assert "valid, 6 warnings" in table.stdout


def test_check_refuses_what_the_control_plane_would_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "mesh.yaml"
    bad.write_text(
        PLANTED.read_text() + "---\napiVersion: sidemesh.io/v1alpha1\nkind: AuthorizationPolicy\n"
        "metadata: {name: typo}\nspec: {targetRefs: [{name: reviewz}]}\n"
    )
    result = _check("-f", str(bad))
    assert result.returncode == 1
    assert "refused, 1 error; nothing would run" in result.stdout
    assert "document 9 (AuthorizationPolicy default/typo) spec.targetRefs[0].name" in result.stdout
    assert "'reviewz' is not a service" in result.stdout
