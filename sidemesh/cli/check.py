"""``sidemesh check``: a mesh.yaml and its documents validated without running them,
every finding with where it is (file, document, field) and what to do about it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sidemesh.errors import ConfigError
from sidemesh.model import load_mesh_file
from sidemesh.model.policy.lint import lint_policies


def gather(path: Path) -> dict[str, Any]:
    """Errors (the control plane would refuse the file), warnings and advice."""
    try:
        state = load_mesh_file(path)
    except ConfigError as exc:
        return {
            "file": str(path),
            "valid": False,
            "errors": [{"where": p.path, "problem": p.reason} for p in exc.problems],
            "warnings": [],
        }
    warnings = [_split(w, str(path)) for w in state.warnings]
    warnings += [{"where": p.path, "problem": p.reason} for p in lint_policies(state)]
    return {"file": str(path), "valid": True, "errors": [], "warnings": warnings}


def _split(warning: str, source: str) -> dict[str, str]:
    text = warning.removeprefix(f"{source}: ")
    where, sep, reason = text.partition(": ")
    return {"where": where, "problem": reason} if sep else {"where": "", "problem": text}


def render(data: dict[str, Any], console: Console) -> None:
    for kind in ("errors", "warnings"):
        findings = data[kind]
        if not findings:
            continue
        table = Table(
            title=f"{data['file']}: {_count(len(findings), kind[:-1])}", title_justify="left"
        )
        table.add_column("where", overflow="fold")
        table.add_column("problem, and what to do", overflow="fold")
        for finding in findings:
            table.add_row(escape(finding["where"]), escape(finding["problem"]))
        console.print(table)
    if data["valid"]:
        console.print(
            f"{data['file']}: valid"
            + (
                f", {_count(len(data['warnings']), 'warning')}"
                if data["warnings"]
                else ", no findings"
            )
        )
    else:
        console.print(
            f"{data['file']}: refused, {_count(len(data['errors']), 'error')}; nothing would run"
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
