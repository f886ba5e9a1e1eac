"""envoy/ is split by side, as its docstrings say: neither side imports the other, nor
the gateway (which calls services as any caller does, through the outbound side)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sidemesh.envoy

ENVOY = Path(sidemesh.envoy.__file__).parent


def _imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ENVOY / package).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize(("side", "other"), [("inbound", "outbound"), ("outbound", "inbound")])
def test_a_side_imports_neither_the_other_side_nor_the_gateway(side: str, other: str) -> None:
    imported = _imports(side)
    assert imported, f"no imports found under envoy/{side}"
    forbidden = (f"sidemesh.envoy.{other}", "sidemesh.envoy.gateway", "sidemesh.envoy.translator")
    assert sorted(m for m in imported if m.startswith(forbidden)) == []
