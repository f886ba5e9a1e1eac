"""Telemetry: what the proxies see, asked of them.

Owns: asking each proxy's Envoy admin (its Unix socket on the control plane's host) for
what it knows, concurrently and each within a short timeout (``admin.py``), reading
Envoy's answers (``envoy_clusters.py``) and what follows from them over all proxies:
per service endpoint, how its callers see it: ejected by outlier detection, failing an
active health check (``endpoint_health.py``); golden signals per edge and service over
sliding windows (``envoy_stats.py``, ``golden.py``, scraped by ``scraper.py``); the
spans proxies send over OTLP (``otlp.py``) kept as recent traces (``traces.py``).
Must not: change a proxy (it only sends GETs to admin endpoints that read), import any
room but ``model``, or let one stuck proxy hold up the answer about the others.
"""

from sidemesh.telemetry.admin import ADMIN_TIMEOUT_S, AdminAnswer, ProxyAdmin, ask_all
from sidemesh.telemetry.endpoint_health import (
    CallerReport,
    CallerViews,
    EndpointHealth,
    EndpointHealthReport,
    WorkloadHealth,
    aggregate,
    endpoint_health,
)
from sidemesh.telemetry.envoy_clusters import HealthFlag, HostView, outbound_hosts
from sidemesh.telemetry.golden import WINDOWS_S, Edge, GoldenSignals, Signals
from sidemesh.telemetry.otlp import trace_service
from sidemesh.telemetry.scraper import SCRAPE_INTERVAL_S, Scraper
from sidemesh.telemetry.traces import Span, Trace, TraceStore

__all__ = [
    "ADMIN_TIMEOUT_S",
    "SCRAPE_INTERVAL_S",
    "WINDOWS_S",
    "AdminAnswer",
    "CallerReport",
    "CallerViews",
    "Edge",
    "EndpointHealth",
    "EndpointHealthReport",
    "GoldenSignals",
    "HealthFlag",
    "HostView",
    "ProxyAdmin",
    "Scraper",
    "Signals",
    "Span",
    "Trace",
    "TraceStore",
    "WorkloadHealth",
    "aggregate",
    "ask_all",
    "endpoint_health",
    "outbound_hosts",
    "trace_service",
]
