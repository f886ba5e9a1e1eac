"""``sidemesh status``: services, workloads, processes, sidecar sync, endpoint health as
the callers see it, identity expiry."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sidemesh.cli.api_client import ApiUnreachable, get_json
from sidemesh.cli.format import duration


def gather(api: str) -> dict[str, Any]:
    state = get_json(api, "/v1/state")
    proxies = {p["node"]: p for p in get_json(api, "/v1/proxies")["proxies"]}
    try:
        local_run = get_json(api, "/v1/local/workloads")
    except ApiUnreachable:  # not local mode: no processes to show
        local_run = {"workloads": []}
    local = {(w["name"], w["namespace"]): w for w in local_run["workloads"]}
    try:
        endpoints = get_json(api, "/v1/endpoints")
    except ApiUnreachable:  # a control plane without it: health unknown, the rest stands
        endpoints = {"workloads": [], "callers": []}
    health = {(w["name"], w["namespace"]): w for w in endpoints["workloads"]}
    rows = []
    for kind, items in (("workload", state["workloads"]), ("gateway", state.get("gateways", []))):
        for item in items:
            node = f"sidecar~{item['name']}~{item['namespace']}"
            proxy = proxies.get(node, {})
            process = local.get((item["name"], item["namespace"]), {})
            seen = health.get((item["name"], item["namespace"]))
            cert = proxy.get("certificate") or {}
            rejected = rejected_config(proxy)
            ready = process.get("ready")
            reason = None
            if rejected is not None:
                # Envoy keeps serving its last good config, so the processes look
                # healthy, but this sidecar no longer follows the mesh.
                ready = False
                reason = f"config rejected: {short_error(rejected['error'])}"
            rows.append(
                {
                    "name": item["name"],
                    "namespace": item["namespace"],
                    "kind": kind,
                    "service": item.get("service"),
                    "version": (item.get("labels") or {}).get("version"),
                    "app": process.get("app"),
                    "sidecar": process.get("sidecar"),
                    "ready": ready,
                    "reason": reason,
                    "connected": proxy.get("connected", False),
                    "synced": proxy.get("synced", False),
                    "configRejected": rejected,
                    "health": seen["health"] if seen else None,
                    "endpointHealth": {k: v for k, v in seen.items() if k in VERDICTS}
                    if seen
                    else None,
                    "identity": item.get("identity"),
                    "certExpiresInSeconds": cert.get("expiresInSeconds"),
                }
            )
    return {
        "meshVersion": state["version"],
        "controlPlane": local_run.get("controlPlane"),
        "services": state["services"],
        "authorizationDefault": state.get("mesh", {}).get("authorization", {}).get("default"),
        "workloads": rows,
        # Their verdicts are missing from every count above: say so next to them.
        "proxiesNotAnswering": [
            {"proxy": c["caller"], "error": c["error"]}
            for c in endpoints["callers"]
            if not c["answered"]
        ],
    }


VERDICTS = (
    "callers",
    "ejectedBy",
    "failingHealthCheckBy",
    "degradedBy",
    "awaitingHealthCheckBy",
)
"""What ``-o json`` keeps of ``/v1/endpoints`` per workload, beside its health line."""


def _covered(service: dict[str, Any], default: str | None) -> str:
    """Who may call the service, in a word: its AuthorizationPolicies and token checks,
    or the mesh default where none applies."""
    parts = (
        [f"authz {', '.join(service['authorizationPolicies'])}"]
        if service.get("authorizationPolicies")
        else [f"none (mesh default: {default or 'allow'})"]
    )
    if service.get("requestAuthentications"):
        parts.append(f"jwt {', '.join(service['requestAuthentications'])}")
    return "; ".join(parts)


def render(data: dict[str, Any], console: Console) -> None:
    control_plane = data.get("controlPlane")
    if control_plane:  # local mode: sidemesh up runs it and restarts it if it dies
        console.print(
            f"control plane: {control_plane['state']} (pid {control_plane['pid']}), "
            f"{control_plane['restarts']} restarts; log: {control_plane['log']}"
        )
    services = Table(title=f"services (mesh version {data['meshVersion']})")
    for column in ("service", "namespace", "ports", "mTLS", "policies", "workloads"):
        services.add_column(column)
    for svc in data["services"]:
        serving = set(svc.get("workloads") or ())
        members = [
            w
            for w in data["workloads"]
            if w["namespace"] == svc["namespace"]
            and (w["name"] in serving or w["service"] == svc["name"])
        ]
        healthy = sum(1 for w in members if _process_state(w) == "running")
        services.add_row(
            svc["name"],
            svc["namespace"],
            ", ".join(f"{p['port']}/{p.get('protocol', 'http')}" for p in svc["ports"]),
            svc.get("mtlsMode") or svc.get("mtls") or "mesh default",
            _covered(svc, data.get("authorizationDefault")),
            f"{healthy}/{len(members)} running",
        )
    console.print(services)
    workloads = Table(title="workloads")
    for column in (
        "workload",
        "service",
        "version",
        "app",
        "restarts",
        "sidecar",
        "health",
        "cert expires",
    ):
        workloads.add_column(column)
    for w in data["workloads"]:
        restarts = sum((p or {}).get("restarts", 0) for p in (w["app"], w["sidecar"]))
        if w.get("configRejected"):
            sync = f"[red]{escape(w['reason'])}[/]"
        elif w["synced"]:
            sync = "synced"
        else:
            sync = "connected" if w["connected"] else "not connected"
        workloads.add_row(
            w["name"],
            w["service"] or f"({w['kind']})",
            w["version"] or "-",
            _process_state(w),
            str(restarts),
            sync,
            _endpoint_health(w),
            duration(w["certExpiresInSeconds"]),
        )
    console.print(workloads)
    silent = data.get("proxiesNotAnswering") or []
    if silent:
        console.print(
            f"[yellow]health counts only the callers whose Envoy answered; "
            f"{len(silent)} did not:[/]"
        )
        for proxy in silent:
            console.print(f"  {escape(proxy['proxy'])}: {escape(str(proxy['error']))}")


def _endpoint_health(row: dict[str, Any]) -> str:
    health = row.get("health")
    if not health:
        return "-"
    verdicts = row.get("endpointHealth") or {}
    if verdicts.get("ejectedBy") or verdicts.get("failingHealthCheckBy"):
        return f"[red]{escape(health)}[/]"  # callers send it no traffic
    return escape(health)


def _process_state(row: dict[str, Any]) -> str:
    process = row["app"] or row["sidecar"]
    if process is None:
        return "-"
    state = str(process["state"])
    if state == "restarting":
        return f"[yellow]restarting[/] (exit {process['lastExit']})"
    return state


def rejected_config(proxy: dict[str, Any]) -> dict[str, Any] | None:
    """The NACK of the version last sent to a proxy, of the first type that has one
    (``/v1/proxies`` shape), or None. A NACK of an older version does not count: what
    was sent since is still on its way or was accepted."""
    for rtype, status in (proxy.get("types") or {}).items():
        nack = status.get("lastNack")
        if nack and not status.get("synced") and nack.get("version") == status.get("sentVersion"):
            return {"type": rtype, "version": nack["version"], "error": nack.get("error", "")}
    return None


PROTO_VALIDATION = "Proto constraint validation failed ("
ERROR_WIDTH = 80


def short_error(message: str, width: int = ERROR_WIDTH) -> str:
    """Envoy's rejection, cut to what fits a table cell: a proto validation error is
    a chain of "caused by" from the whole resource (dumped before it) down to the one
    field, so only the field's part is kept; otherwise the first sentence."""
    text = " ".join(message.split())
    if PROTO_VALIDATION in text:
        chain = text.split(PROTO_VALIDATION, 1)[1].removesuffix(")")
        text = chain.rsplit("| caused by ", 1)[-1].replace("ValidationError.", ".")
    elif len(text) > width and ". " in text:
        text = text.split(". ", 1)[0]
    return text if len(text) <= width else text[: width - 1] + "…"
