"""``sidemesh status``: services, workloads, health, sidecar sync, identity expiry."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from sidemesh.cli.api_client import ApiUnreachable, get_json
from sidemesh.cli.format import duration


def gather(api: str) -> dict[str, Any]:
    state = get_json(api, "/v1/state")
    proxies = {p["node"]: p for p in get_json(api, "/v1/proxies")["proxies"]}
    try:
        local = {
            (w["name"], w["namespace"]): w
            for w in get_json(api, "/v1/local/workloads")["workloads"]
        }
    except ApiUnreachable:  # not local mode: no processes to show
        local = {}
    rows = []
    for kind, items in (("workload", state["workloads"]), ("gateway", state.get("gateways", []))):
        for item in items:
            node = f"sidecar~{item['name']}~{item['namespace']}"
            proxy = proxies.get(node, {})
            process = local.get((item["name"], item["namespace"]), {})
            cert = proxy.get("certificate") or {}
            rows.append(
                {
                    "name": item["name"],
                    "namespace": item["namespace"],
                    "kind": kind,
                    "service": item.get("service"),
                    "version": (item.get("labels") or {}).get("version"),
                    "app": process.get("app"),
                    "sidecar": process.get("sidecar"),
                    "ready": process.get("ready"),
                    "connected": proxy.get("connected", False),
                    "synced": proxy.get("synced", False),
                    "identity": item.get("identity"),
                    "certExpiresInSeconds": cert.get("expiresInSeconds"),
                }
            )
    return {"meshVersion": state["version"], "services": state["services"], "workloads": rows}


def render(data: dict[str, Any], console: Console) -> None:
    services = Table(title=f"services (mesh version {data['meshVersion']})")
    for column in ("service", "namespace", "ports", "mTLS", "workloads"):
        services.add_column(column)
    for svc in data["services"]:
        members = [w for w in data["workloads"] if w["service"] == svc["name"]]
        healthy = sum(1 for w in members if _health(w) == "running")
        services.add_row(
            svc["name"],
            svc["namespace"],
            ", ".join(f"{p['port']}/{p.get('protocol', 'http')}" for p in svc["ports"]),
            svc.get("mtls") or "mesh default",
            f"{healthy}/{len(members)} running",
        )
    console.print(services)
    workloads = Table(title="workloads")
    for column in ("workload", "service", "version", "app", "restarts", "sidecar", "cert expires"):
        workloads.add_column(column)
    for w in data["workloads"]:
        restarts = sum((p or {}).get("restarts", 0) for p in (w["app"], w["sidecar"]))
        sync = "synced" if w["synced"] else ("connected" if w["connected"] else "not connected")
        workloads.add_row(
            w["name"],
            w["service"] or f"({w['kind']})",
            w["version"] or "-",
            _health(w),
            str(restarts),
            sync,
            duration(w["certExpiresInSeconds"]),
        )
    console.print(workloads)


def _health(row: dict[str, Any]) -> str:
    process = row["app"] or row["sidecar"]
    if process is None:
        return "-"
    state = str(process["state"])
    if state == "restarting":
        return f"[yellow]restarting[/] (exit {process['lastExit']})"
    return state
