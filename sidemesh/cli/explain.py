"""``sidemesh explain``: what a request from one workload to a service gets (its route,
backends, timeout and retries, and at each backend whether it is allowed, by which
policy and rule), computed from the Envoy config the mesh would send."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sidemesh.envoy.explain import Request, explain
from sidemesh.model import load_mesh_file


def read_claims(path: Path) -> dict[str, Any]:
    """The claims of a token file: a JWT (its payload, not verified: explain answers
    what a request carrying it gets) or a JSON object of claims."""
    text = path.read_text().strip()
    if text.startswith("{"):
        claims = json.loads(text)
    else:
        payload = text.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    if not isinstance(claims, dict):
        raise ValueError(f"{path}: the token's payload is not a JSON object")
    return claims


def gather(mesh_file: Path, request: Request) -> dict[str, Any]:
    state = load_mesh_file(mesh_file)
    found = explain(state, request).to_json()
    return {
        "request": {
            "from": f"{request.caller}.{request.namespace}",
            "host": request.host,
            "method": request.method,
            "path": request.path,
            "token": request.claims is not None,
        },
        **found,
    }


def render(data: dict[str, Any], console: Console) -> None:
    asked = data["request"]
    console.print(
        f"{asked['method']} {asked['path']} from {asked['from']} to {asked['host']}"
        + (" with a token" if asked["token"] else "")
    )
    if data["status"] is not None:
        console.print(
            f"the caller's sidecar answers {data['status']}: {escape(data['detail'])}"
            + (f" (rule {data['route']})" if data["route"] else "")
        )
        return
    console.print(
        f"route: {data['route']} (virtual host {data['virtualHost']}), "
        f"timeout {data['timeoutSeconds']:g}s, retries {data['retry'].get('attempts', 0)} "
        f"on {data['retry'].get('on', '-')}"
    )
    table = Table(title="backends", title_justify="left")
    for column in ("service", "port", "weight", "answer", "why"):
        table.add_column(column)
    for backend in data["backends"]:
        why = backend["decision"] + (
            f"; audited by {', '.join(backend['auditedBy'])}" if backend["auditedBy"] else ""
        )
        table.add_row(
            backend["service"],
            str(backend["port"]),
            str(backend["weight"]),
            str(backend["status"]),
            escape(why),
        )
    console.print(table)
