"""``sidemesh proxy-config``: what the control plane sent a sidecar, and what its Envoy
says it has, side by side."""

from __future__ import annotations

import difflib
import json
from typing import Any

import httpx
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from sidemesh.cli.api_client import ApiUnreachable, get_json
from sidemesh.envoy import ResourceType
from sidemesh.envoy.outbound.demand import route_config_of
from sidemesh.telemetry.admin import admin_client_sync

# Where each type sits in Envoy's /config_dump, and the key of the resource in it.
_DUMP_PATHS = {
    "clusters": ("dynamic_active_clusters", "cluster"),
    "listeners": ("dynamic_listeners", "active_state", "listener"),
    "routes": ("dynamic_route_configs", "route_config"),
    "endpoints": ("dynamic_endpoint_configs", "endpoint_config"),
}
TYPES = ("listeners", "routes", "clusters", "endpoints", "secrets")


def gather(api: str, workload: str, namespace: str) -> dict[str, Any]:
    node = f"sidecar~{workload}~{namespace}"
    sent = get_json(api, f"/v1/proxies/{node}/config")
    admin = next(
        (
            p.get("adminSocket")
            for p in get_json(api, "/v1/proxies")["proxies"]
            if p["node"] == node
        ),
        None,
    )
    envoy: dict[str, Any] = {}
    certs: list[dict[str, Any]] = []
    error = None
    if admin is not None:
        # Envoy's admin listens on a Unix socket of this host, private to the mesh's user.
        try:
            with admin_client_sync(admin) as client:
                dump = client.get("/config_dump?include_eds").json()
                envoy = _from_dump(dump)
                certs = client.get("/certs").json().get("certificates", [])
        except (httpx.HTTPError, ValueError) as exc:
            error = f"cannot read Envoy's admin on unix:{admin}: {exc}"
    types = _with_virtual_hosts_inline(sent["types"])
    return {
        "node": node,
        "sent": types,
        "services": sent.get("services"),
        "envoy": envoy,
        "certs": certs,
        "error": error,
    }


def _with_virtual_hosts_inline(types: dict[str, Any]) -> dict[str, Any]:
    """The route configurations as Envoy holds them: those whose virtual hosts come
    one by one (VHDS, on demand) with them merged in, after their own, by name."""
    vhosts = types.get("vhosts") or {}
    routes = {}
    for name, sent in (types.get("routes") or {}).items():
        config = dict(sent["config"])
        if "vhds" in config:
            mine = sorted((n, v["config"]) for n, v in vhosts.items() if route_config_of(n) == name)
            config["virtual_hosts"] = list(config.get("virtual_hosts", [])) + [c for _, c in mine]
        routes[name] = {**sent, "config": config}
    return {**types, "routes": routes}


def _from_dump(dump: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section in dump.get("configs", []):
        for short, path in _DUMP_PATHS.items():
            items = section.get(path[0])
            if not items:
                continue
            for item in items:
                config: Any = item
                for key in path[1:]:
                    config = config.get(key, {}) if isinstance(config, dict) else {}
                name = config.get("name") or config.get("cluster_name")
                if name:
                    out.setdefault(short, {})[name] = config
    return out


def compare(short: str, sent: dict[str, Any], envoy: dict[str, Any] | None) -> tuple[str, str]:
    """(verdict, diff): same, differs or missing, by meaning, not by bytes (both sides
    are read into the same protobuf type and written out the same way); when they
    differ, a unified diff of the two, control plane first."""
    if envoy is None:
        return "missing in Envoy", ""
    rtype = next(t for t in ResourceType if t.short == short)
    try:
        ours = _normal(rtype, sent)
        theirs = _normal(rtype, {k: v for k, v in envoy.items() if k != "@type"})
    except json_format.ParseError:
        return "unknown", ""
    if ours == theirs:
        return "same", ""
    diff = difflib.unified_diff(
        json.dumps(ours, indent=2, sort_keys=True).splitlines(),
        json.dumps(theirs, indent=2, sort_keys=True).splitlines(),
        "sent by the control plane",
        "in Envoy",
        lineterm="",
    )
    return "differs", "\n".join(diff)


def _normal(rtype: ResourceType, data: dict[str, Any]) -> dict[str, Any]:
    from google.protobuf import symbol_database

    cls = symbol_database.Default().GetSymbol(rtype.url.split("/", 1)[1])
    message: Message = cls()
    json_format.ParseDict(data, message, ignore_unknown_fields=True)
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def render(data: dict[str, Any], kinds: list[str], console: Console) -> None:
    if data["error"]:
        console.print(f"[yellow]{data['error']}[/]")
    services = data.get("services")
    if services is not None:
        table = Table(
            title=f"{data['node']}: services it holds (the others it learns at a first call)"
        )
        table.add_column("service")
        table.add_column("why")
        for service, why in sorted(services.items()):
            table.add_row(service, why)
        console.print(table)
    for short in kinds:
        if short == "secrets":
            table = Table(title=f"{data['node']}: secrets (from the agent over SDS)")
            for column in ("certificate", "serial", "expires", "SPIFFE ID"):
                table.add_column(column)
            seen: set[tuple[str, str]] = set()
            for cert in data["certs"]:  # one entry per TLS context: show each cert once
                for chain in cert.get("cert_chain", []):
                    if ("workload", chain.get("serial_number", "")) in seen:
                        continue
                    seen.add(("workload", chain.get("serial_number", "")))
                    uris = [s.get("uri") for s in chain.get("subject_alt_names", []) if "uri" in s]
                    table.add_row(
                        "workload",
                        chain.get("serial_number", ""),
                        chain.get("expiration_time", ""),
                        ", ".join(u for u in uris if u),
                    )
                for ca in cert.get("ca_cert", []):
                    if ("bundle", ca.get("serial_number", "")) in seen:
                        continue
                    seen.add(("bundle", ca.get("serial_number", "")))
                    table.add_row(
                        "trust bundle",
                        ca.get("serial_number", ""),
                        ca.get("expiration_time", ""),
                        "",
                    )
            console.print(table)
            continue
        table = Table(title=f"{data['node']}: {short}")
        for column in ("name", "version sent", "in Envoy"):
            table.add_column(column)
        sent = data["sent"].get(short, {})
        envoy = data["envoy"].get(short, {})
        diffs = []
        for name in sorted(set(sent) | set(envoy)):
            if name not in sent:
                table.add_row(name, "-", "[yellow]not sent by the control plane[/]")
                continue
            verdict, diff = (
                compare(short, sent[name]["config"], envoy.get(name))
                if not data["error"]
                else ("?", "")
            )
            colour = "green" if verdict == "same" else "yellow"
            table.add_row(name, sent[name]["version"], f"[{colour}]{verdict}[/]")
            if diff:
                diffs.append(f"{name}:\n{diff}")
        console.print(table)
        for diff in diffs:
            console.print(diff, markup=False, highlight=False)


__all__ = ["TYPES", "ApiUnreachable", "gather", "render"]
