"""``sidemesh inject``, ``redirect`` and ``ready`` as an operator (or a pod) runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import yaml

from tests.kube.test_inject import MANIFESTS, VERSIONS


def _sidemesh(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidemesh", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_inject_rewrites_what_runs_pods_and_leaves_the_rest(tmp_path: Path) -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews"},
               "spec": {"ports": [{"port": 9080}]}}  # fmt: skip
    path = tmp_path / "app.yaml"
    path.write_text(yaml.safe_dump_all([MANIFESTS["Deployment"], service, MANIFESTS["Job"]]))
    done = _sidemesh("inject", "-f", str(path), "--image", "registry.example/sidemesh:2")
    assert done.returncode == 0, done.stderr
    deployment, untouched, job = yaml.safe_load_all(done.stdout)
    assert untouched == service
    for manifest in (deployment, job):
        for version in VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)
        init = manifest["spec"]["template"]["spec"]["initContainers"]
        assert init[1]["image"] == "registry.example/sidemesh:2"
    assert "# Deployment reviews: injected" in done.stderr
    again = _sidemesh("inject", "-f", "-", stdin=done.stdout)
    assert list(yaml.safe_load_all(again.stdout)) == [deployment, untouched, job]
    assert "already injected" in again.stderr


def test_inject_refuses_what_is_not_yaml_with_the_file_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("kind: [unclosed\n")
    done = _sidemesh("inject", "-f", str(path))
    assert done.returncode == 2 and done.stderr.startswith(f"{path}: ")


def test_redirect_dry_run_prints_the_rules_and_changes_nothing() -> None:
    done = _sidemesh("redirect", "--dry-run", "--exclude-outbound-port", "5432")
    assert done.returncode == 0
    assert done.stdout.startswith("*nat\n") and "--dport 5432 -j RETURN" in done.stdout


def test_ready_fails_with_why_when_no_envoy_answers(tmp_path: Path) -> None:
    done = _sidemesh("ready", "--socket-dir", str(tmp_path))
    assert done.returncode == 1 and done.stderr.startswith(
        "not ready: no answer from Envoy's admin"
    )
