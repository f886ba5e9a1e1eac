"""Why a request failed, in words: what Envoy's response flags and details mean for it,
so a 503 says why. Read from an access-log entry (the sidecars' JSON lines) or from the
same facts a span carries."""

from __future__ import annotations

import re
from typing import Any

_OUTBOUND = re.compile(r"^outbound\|\d+\|[^|]*\|(.+)$")
_INBOUND = re.compile(r"^inbound\|(\d+)\|(.+)$")
_RBAC = re.compile(r"rbac_access_denied_matched_policy\[(.+)\]")


def _service(cluster: str) -> str:
    inbound = _INBOUND.match(cluster or "")
    if inbound is not None:
        return f"its own app (service {inbound.group(2)}, port {inbound.group(1)})"
    outbound = _OUTBOUND.match(cluster or "")
    return outbound.group(1) if outbound is not None else cluster or "the upstream"


def reason(entry: dict[str, Any]) -> str:
    """Why the request failed, in words, from one access-log entry."""
    flags = set(str(entry.get("responseFlags") or "-").split(","))
    details = str(entry.get("responseCodeDetails") or "")
    service = _service(str(entry.get("upstreamCluster") or ""))
    upstream = entry.get("upstream")
    upstream = upstream if upstream not in (None, "-", "") else None
    failure = entry.get("upstreamFailure")
    failure = str(failure).replace("_", " ").strip() if failure not in (None, "-", "") else None
    rbac = _RBAC.search(details)
    if rbac is not None:
        rule = rbac.group(1)
        return (
            "refused: no ALLOW rule of its AuthorizationPolicies matches"
            if rule == "none"
            else f"refused by AuthorizationPolicy rule {rule}"
        )
    if details.startswith("jwt_authn_access_denied"):
        return f"its token was refused: {details.partition('{')[2].rstrip('}').replace('_', ' ')}"
    if "UF" in flags:
        at = f" ({upstream})" if upstream else ""
        why = f": {failure}" if failure else ""
        return f"no connection to {service}{at}{why}"
    if "UO" in flags:
        return f"circuit breaker of {service} is open (its BackendPolicy's connection pool is full)"
    if "NR" in flags:
        host = entry.get("authority")
        return f"no route for Host {host} (no service, route rule or outside host matches)"
    if "UH" in flags:
        return f"no healthy workload of {service} (all ejected, failing health checks, or none)"
    if "UT" in flags:
        return f"{service} did not answer within the route's timeout"
    if "URX" in flags:
        return f"{service} kept failing: retries and connection attempts used up"
    if "RL" in flags:
        return "rate limited by the service's BackendPolicy"
    if "FI" in flags:
        return "aborted by a FaultInjection"
    if "DC" in flags:
        return "the caller closed its connection before the answer"
    if "DPE" in flags or "UPE" in flags:
        return "an HTTP protocol error"
    if "UC" in flags or "UR" in flags:
        return f"{service} closed or reset the connection"
    status = entry.get("status")
    if details == "via_upstream":
        return f"{service} answered {status}"
    return details.replace("_", " ") or f"answered {status}"


def span_reason(attributes: dict[str, str]) -> str:
    """Why the request of a failed span failed, from the tags Envoy gives its spans
    (response flags, upstream cluster, status, URL)."""
    flags = attributes.get("response_flags") or "-"
    url = attributes.get("http.url", "")
    host = url.split("://", 1)[-1].split("/", 1)[0]
    entry = {
        "responseFlags": flags,
        "responseCodeDetails": "via_upstream" if flags == "-" else "",
        "upstreamCluster": attributes.get("upstream_cluster", ""),
        "status": attributes.get("http.status_code"),
        "authority": host,
    }
    return reason(entry)
