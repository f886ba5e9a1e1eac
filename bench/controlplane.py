"""Control plane benchmark: translation time, and endpoint-change and policy-edit delivery
over real xDS.

For a synthetic mesh of N services with M workloads each (one HTTP port per service,
mTLS STRICT, every workload resolved: namespace, service account, ports, sidecar ports):

1. Translation, in this process: a fresh ``Translator`` translating the first proxy
   (which builds every shared resource), each further proxy (median), and one
   endpoint change (``reuse_unchanged``) re-translated for one proxy. Measured at the
   run's size and at the reference size of the targets (1,000 services x 10 workloads).
2. xDS, per mode (state of the world, delta): the real control plane pieces
   (``SnapshotCache``, ``StatusBoard``, ``Publisher``, ``AdsServer`` on ``grpc.aio``),
   wired as ``sidemesh/controlplane.py`` wires them, run in a child process; this
   process runs P simulated Envoys (``bench/xds_client.py``) on real ADS streams. Once
   every proxy has ACKed everything, K endpoint changes are made, ~1 s apart; for each,
   the server records t0 at ``publisher.update_state`` and, per proxy, when it receives
   that proxy's ACK of the new endpoints. Reported: p50/p99/max of (ACK - t0), bytes
   pushed (sum of serialized responses the clients received), control plane CPU
   seconds and peak RSS of the child.
3. Policies (unless --policy-edits 0). Translation as in 1, of the same mesh with one
   HTTPRoute (a header rule, then a 90/10 split between the service and the next one,
   with a timeout and retries) and one BackendPolicy (load balancing, connection pool,
   outlier detection, health check, retry budget) per service; the change
   re-translated is one route's weights. Then, in each xDS run after the endpoint
   changes: the policies are added (one push of new clusters and routes to every
   proxy), and --policy-edits edits each change one HTTPRoute's weights; for each, the
   server records, per proxy, when it receives that proxy's ACK of the new route
   configuration. The peak RSS of 2. is taken before the policies are added.

The simulated Envoys reconnect after a backoff when a stream fails, as Envoy does: when
thousands connect at once, gRPC core cancels the calls the server has not yet picked
up beyond ``grpc.server.max_pending_requests`` (1,000); the run reports how many.
Every wait is bounded (--sync-timeout, --change-timeout, fixed ones for the child's
start and each command) and the child is always stopped, terminated if need be.

Usage (from the repository root):
    .venv/bin/python -m bench.controlplane [--services 100] [--workloads 10]
        [--proxies 100] [--mode sotw|delta|both] [--changes 5] [--policy-edits 5]
        [--spacing 1.0] [--streams-per-channel 50] [--sync-timeout S] [--change-timeout 60]
        [--profile] [--quick]
--profile runs cProfile in the control plane during the changes and prints its top
functions (and writes a .prof next to the JSON); it slows the server, so latency
targets are then not judged.

Ends with one line:
    controlplane: proxies=1000 ack_p99_s=0.42 translate_1000_s=0.31 rss_mb=410
        translate_policies_1000_s=0.40 policy_ack_p99_s=0.80
(one line) where ack_p99_s is the worst p99 of the modes run, translate_1000_s the full
translation of 1,000 services / 10,000 endpoints, rss_mb the largest peak RSS of the
control plane child, translate_policies_1000_s the full translation of that mesh with
its policies and policy_ack_p99_s the worst p99 of the route edits (left out with
--policy-edits 0). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import gc
import io
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import pstats
import random
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bench.xds_client import ClientStats, run_clients, stop_clients
from sidemesh.envoy import ProxyId, ResourceType, Translator
from sidemesh.envoy.outbound.demand import Reason
from sidemesh.model import (
    MeshConfig,
    MeshState,
    Service,
    ServiceKey,
    ServicePort,
    Sidecar,
    Workload,
    WorkloadPort,
)
from sidemesh.model.policy import BackendPolicy, HTTPRoute, Policies
from sidemesh.xds import AdsServer, Publisher, SnapshotCache, StatusBoard
from sidemesh.xds.server import GRPC_SERVER_OPTIONS

NAMESPACE = "default"
SERVICE_PORT = 9080
PORT_NAME = f"http-{SERVICE_PORT}"
ENDPOINT_PORT = 8080
APP_PORT = 9000
CHANGED_PORT_BASE = 20000
"""Change k moves one workload's endpoint to port CHANGED_PORT_BASE + k."""

REFERENCE_SERVICES = 1000
REFERENCE_WORKLOADS = 10
"""The targets' mesh: 1,000 services, 10,000 endpoints."""
REFERENCE_PROXY_SAMPLE = 200
RETRANSLATE_SAMPLES = 20

START_TIMEOUT_S = 120.0
"""Longest wait for the control plane child to build its state and listen."""
CALL_TIMEOUT_S = 120.0
"""Longest wait for the child to answer one command (a change publishes to every proxy)."""
STOP_TIMEOUT_S = 15.0
POLL_S = 0.05
SETTLE_S = 0.2
"""After the last ACK of a change: time for responses still in flight to arrive."""

RESULTS_DIR = Path(__file__).resolve().parent / "results"

log = logging.getLogger("bench.controlplane")


class BenchError(Exception):
    """The benchmark could not measure what it was asked to."""


# --- the synthetic mesh ---------------------------------------------------------------


def service_name(i: int) -> str:
    return f"svc-{i:04d}"


def workload_name(i: int, j: int) -> str:
    return f"{service_name(i)}-{j}"


def _address(index: int) -> str:
    """Distinct loopback addresses, 127.0.0.1 upwards (nothing listens on them)."""
    index += 1
    return f"127.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"


def build_state(services: int, workloads: int, version: int = 1) -> MeshState:
    """A resolved mesh: what ``load_mesh_file`` would return for the same mesh.yaml."""
    svc_map: dict[ServiceKey, Service] = {}
    wl_map: dict[tuple[str, str], Workload] = {}
    sidecar = Sidecar(outbound_port=15001)
    for i in range(services):
        name = service_name(i)
        svc_map[ServiceKey(name, NAMESPACE)] = Service(
            name=name, namespace=NAMESPACE, ports=(ServicePort(port=SERVICE_PORT),)
        )
        for j in range(workloads):
            wl = Workload(
                name=workload_name(i, j),
                service=name,
                namespace=NAMESPACE,
                labels={"version": "v1"},
                address=_address(i * workloads + j),
                ports=(WorkloadPort(name=PORT_NAME, port=ENDPOINT_PORT, app_port=APP_PORT),),
                service_account=name,
                sidecar=sidecar,
            )
            wl_map[(wl.name, NAMESPACE)] = wl
    return MeshState(version=version, mesh=MeshConfig(), services=svc_map, workloads=wl_map)


def proxy_workloads(services: int, workloads: int, proxies: int) -> list[str]:
    """Proxy p is workload p // N of service p % N: every service has sidecars."""
    if proxies > services * workloads:
        raise BenchError(f"--proxies {proxies} exceeds the mesh's {services * workloads} workloads")
    return [workload_name(p % services, p // services) for p in range(proxies)]


def change_target(services: int, workloads: int, k: int) -> str:
    """The workload change k moves: the last one of a service counted from the end, so
    it is rarely a connected proxy itself."""
    return workload_name(services - 1 - (k % services), workloads - 1)


def changed_state(previous: MeshState, k: int, services: int, workloads: int) -> MeshState:
    """``previous`` with exactly one workload's endpoint port changed, as a source
    would produce it: a new state, then ``reuse_unchanged``."""
    key = (change_target(services, workloads, k), NAMESPACE)
    old = previous.workloads[key]
    port = old.ports[0].model_copy(update={"port": CHANGED_PORT_BASE + k})
    new_workloads = dict(previous.workloads)
    new_workloads[key] = old.model_copy(update={"ports": (port,)})
    fresh = MeshState(previous.version + 1, previous.mesh, previous.services, new_workloads)
    return fresh.reuse_unchanged(previous)


# --- policies of the synthetic mesh --------------------------------------------------

SPLIT = (90, 10)
"""Every service's route: 90% to the service, 10% to the next one (its canary)."""


def route_document(i: int, services: int, weights: tuple[int, int] = SPLIT) -> dict[str, Any]:
    """Service i's HTTPRoute, as mesh.yaml would hold it: a header rule, then a weighted
    split with a timeout and retries."""
    name = service_name(i)
    ref = {"name": name, "port": SERVICE_PORT}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": name, "port": SERVICE_PORT}],
            "rules": [
                {
                    "matches": [{"headers": [{"name": "end-user", "value": "jason"}]}],
                    "backendRefs": [ref],
                },
                {
                    "backendRefs": [
                        {**ref, "weight": weights[0]},
                        {
                            "name": service_name((i + 1) % services),
                            "port": SERVICE_PORT,
                            "weight": weights[1],
                        },
                    ],
                    "timeouts": {"request": "10s"},
                    "retry": {"attempts": 3, "codes": [502, 503]},
                },
            ],
        },
    }


def backend_policy_document(i: int) -> dict[str, Any]:
    """Service i's BackendPolicy: every section the kind has but session affinity."""
    name = service_name(i)
    return {
        "apiVersion": "sidemesh.io/v1alpha1",
        "kind": "BackendPolicy",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "targetRefs": [{"name": name}],
            "loadBalancer": {"type": "LeastRequest"},
            "connectionPool": {
                "maxConnections": 1024,
                "maxPendingRequests": 1024,
                "maxRequests": 1024,
            },
            "outlierDetection": {
                "consecutive5xxErrors": 5,
                "interval": "10s",
                "baseEjectionTime": "30s",
                "maxEjectionPercent": 50,
            },
            "healthCheck": {"path": "/healthz", "interval": "5s", "timeout": "1s"},
            "retryBudget": {"percent": 20, "minRetryConcurrency": 5},
        },
    }


def with_policies(previous: MeshState, services: int) -> MeshState:
    """``previous`` (a new version) with one HTTPRoute and one BackendPolicy per service."""
    policies = Policies(
        http_routes=tuple(
            HTTPRoute.model_validate(route_document(i, services)) for i in range(services)
        ),
        backend_policies=tuple(
            BackendPolicy.model_validate(backend_policy_document(i)) for i in range(services)
        ),
    )
    fresh = MeshState(
        version=previous.version + 1,
        mesh=previous.mesh,
        services=previous.services,
        workloads=previous.workloads,
        policies=policies,
    )
    return fresh.reuse_unchanged(previous)


def route_edit(services: int, k: int) -> tuple[int, tuple[int, int]]:
    """Edit k: which service's route, and its new weights (never those it has)."""
    canary = 11 + k % 80
    return k % services, (100 - canary, canary)


def edited_state(previous: MeshState, k: int, services: int) -> MeshState:
    """``previous`` with one HTTPRoute's weights changed, as a source would produce it:
    a new state, then ``reuse_unchanged``."""
    i, weights = route_edit(services, k)
    edited = HTTPRoute.model_validate(route_document(i, services, weights))
    routes = tuple(
        edited if r.metadata.name == edited.metadata.name else r
        for r in previous.policies.http_routes
    )
    policies = Policies(
        http_routes=routes,
        grpc_routes=previous.policies.grpc_routes,
        backend_policies=previous.policies.backend_policies,
        fault_injections=previous.policies.fault_injections,
    )
    fresh = MeshState(
        version=previous.version + 1,
        mesh=previous.mesh,
        services=previous.services,
        workloads=previous.workloads,
        policies=policies,
    )
    return fresh.reuse_unchanged(previous)


# --- statistics ---------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest rank; ``inf`` entries stand for proxies that never ACKed."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(latencies: Sequence[float], expected: int) -> dict[str, Any]:
    """p50/p99/max of ACK latencies, counting each missing ACK as infinitely late."""
    values = sorted([*latencies, *([math.inf] * max(0, expected - len(latencies)))])
    return {
        "acked": len(latencies),
        "expected": expected,
        "p50_s": percentile(values, 0.50),
        "p90_s": percentile(values, 0.90),
        "p99_s": percentile(values, 0.99),
        "max_s": values[-1] if values else math.nan,
    }


# --- 1. translation -----------------------------------------------------------------


def measure_translation(services: int, workloads: int, proxies: int) -> dict[str, Any]:
    t = time.perf_counter()
    state = build_state(services, workloads)
    build_s = time.perf_counter() - t
    names = proxy_workloads(services, workloads, max(1, proxies))
    translator = Translator()
    t = time.perf_counter()
    first = translator.for_proxy(state, ProxyId(names[0], NAMESPACE))
    first_s = time.perf_counter() - t
    further: list[float] = []
    for name in names[1:]:
        t = time.perf_counter()
        translator.for_proxy(state, ProxyId(name, NAMESPACE))
        further.append(time.perf_counter() - t)
    counts = {rtype.short: len(first[rtype]) for rtype in ResourceType}

    retranslate: list[float] = []
    new_state: list[float] = []
    translated_before = translator.services_translated
    previous = state
    for k in range(RETRANSLATE_SAMPLES):
        t = time.perf_counter()
        current = changed_state(previous, k, services, workloads)
        new_state.append(time.perf_counter() - t)
        t = time.perf_counter()
        translator.for_proxy(current, ProxyId(names[0], NAMESPACE))
        retranslate.append(time.perf_counter() - t)
        previous = current
    return {
        "services": services,
        "workloads": workloads,
        "endpoints": services * workloads,
        "build_state_s": build_s,
        "first_proxy_s": first_s,
        "further_proxies": len(further),
        "further_proxy_median_s": statistics.median(further) if further else math.nan,
        "further_proxy_max_s": max(further) if further else math.nan,
        "resources_first_proxy": counts,
        "endpoint_change_retranslate_median_s": statistics.median(retranslate),
        "endpoint_change_retranslate_max_s": max(retranslate),
        "endpoint_change_samples": len(retranslate),
        "endpoint_change_new_state_median_s": statistics.median(new_state),
        "endpoint_change_services_retranslated": translator.services_translated - translated_before,
    }


def measure_policy_translation(services: int, workloads: int, proxies: int) -> dict[str, Any]:
    """As ``measure_translation``, for the same mesh with one HTTPRoute and one
    BackendPolicy per service; the change re-translated is one route's weights."""
    t = time.perf_counter()
    state = with_policies(build_state(services, workloads), services)
    build_s = time.perf_counter() - t
    names = proxy_workloads(services, workloads, max(1, proxies))
    translator = Translator()
    t = time.perf_counter()
    first = translator.for_proxy(state, ProxyId(names[0], NAMESPACE))
    first_s = time.perf_counter() - t
    further: list[float] = []
    for name in names[1:]:
        t = time.perf_counter()
        translator.for_proxy(state, ProxyId(name, NAMESPACE))
        further.append(time.perf_counter() - t)
    counts = {rtype.short: len(first[rtype]) for rtype in ResourceType}
    sizes = {
        rtype.short: sum(r.body.ByteSize() for r in first[rtype].values()) for rtype in ResourceType
    }
    retranslate: list[float] = []
    new_state: list[float] = []
    translated_before = translator.services_translated
    previous = state
    for k in range(RETRANSLATE_SAMPLES):
        t = time.perf_counter()
        current = edited_state(previous, k, services)
        new_state.append(time.perf_counter() - t)
        t = time.perf_counter()
        translator.for_proxy(current, ProxyId(names[0], NAMESPACE))
        retranslate.append(time.perf_counter() - t)
        previous = current
    return {
        "services": services,
        "workloads": workloads,
        "endpoints": services * workloads,
        "http_routes": len(state.policies.http_routes),
        "backend_policies": len(state.policies.backend_policies),
        "build_state_s": build_s,
        "first_proxy_s": first_s,
        "further_proxies": len(further),
        "further_proxy_median_s": statistics.median(further) if further else math.nan,
        "further_proxy_max_s": max(further) if further else math.nan,
        "resources_first_proxy": counts,
        "bytes_first_proxy": sizes,
        "route_edit_retranslate_median_s": statistics.median(retranslate),
        "route_edit_retranslate_max_s": max(retranslate),
        "route_edit_samples": len(retranslate),
        "route_edit_new_state_median_s": statistics.median(new_state),
        "route_edit_services_retranslated": translator.services_translated - translated_before,
    }


# --- 2. the control plane child -----------------------------------------------------


@dataclass
class _Change:
    """One endpoint change as the server sees it."""

    version: int
    workload: str
    """What changed: the workload moved, or the policies edited."""
    expected: int
    """Connected proxies when the change was published."""
    t0: float
    cpu0: float
    publish_s: float = 0.0
    acked: dict[str, float] = field(default_factory=dict)
    """Node id → seconds from t0 to the server receiving its ACK of the new endpoints."""
    responses: int = 0
    resources: int = 0
    cpu_s: float | None = None
    """Control plane CPU from t0 to the last ACK (or to the result, if some never came)."""
    rtypes: tuple[ResourceType, ...] = (ResourceType.ENDPOINT,)
    """The types the change gives every proxy: its ACK is that of the last of them."""


class _TimedStatusBoard(StatusBoard):
    """The real StatusBoard, plus the time each proxy ACKs the change being measured
    (the new endpoints, or the new routes and clusters of a policy change)."""

    def __init__(self) -> None:
        super().__init__()
        self.change: _Change | None = None

    def on_sent(
        self, node_id: str, rtype: ResourceType, version: str, state_version: int, count: int
    ) -> None:
        super().on_sent(node_id, rtype, version, state_version, count)
        change = self.change
        if change is not None:
            change.responses += 1
            change.resources += count

    def on_ack(self, node_id: str, rtype: ResourceType, version: str) -> None:
        super().on_ack(node_id, rtype, version)
        change = self.change
        if change is None or rtype not in change.rtypes or node_id in change.acked:
            return
        proxy = self.proxies[node_id]
        if all(proxy.type(t).acked_state_version >= change.version for t in change.rtypes):
            change.acked[node_id] = time.monotonic() - change.t0
            if len(change.acked) >= change.expected:
                change.cpu_s = time.process_time() - change.cpu0

    def sync_counts(self) -> tuple[int, int]:
        """(connected proxies, connected proxies that ACKed everything of the four
        types every proxy has, and of virtual hosts when on demand)."""
        connected = synced = 0
        for proxy in self.proxies.values():
            if proxy.connected:
                connected += 1
                if proxy.synced and set(proxy.types) >= _EVERY_PROXY_HAS:
                    synced += 1
        return connected, synced


_EVERY_PROXY_HAS = {
    ResourceType.CLUSTER,
    ResourceType.ENDPOINT,
    ResourceType.LISTENER,
    ResourceType.ROUTE,
}


def _usage() -> dict[str, float]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    memory = _proc_status_mb()
    return {
        "cpu_s": ru.ru_utime + ru.ru_stime,
        # VmHWM, not ru_maxrss: a spawned child's ru_maxrss starts at the RSS of the
        # forked parent it exec'd from, which is the benchmark's, not the control plane's.
        "max_rss_mb": memory.get("VmHWM", ru.ru_maxrss / 1024),
        "rss_mb": memory.get("VmRSS", math.nan),
    }


def _proc_status_mb() -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of this process, in MiB, where /proc has them."""
    out: dict[str, float] = {}
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM") and value.strip().endswith("kB"):
            out[key] = int(value.split()[0]) / 1024
    return out


def _server_main(conn: Connection, services: int, workloads: int, on_demand: bool) -> None:
    """Entry point of the control plane child. Exits when told to, or when the parent
    goes away (the pipe closes)."""
    logging.basicConfig(level=logging.WARNING, format="control plane: %(levelname)s %(message)s")
    with contextlib.suppress(EOFError, BrokenPipeError, KeyboardInterrupt):
        asyncio.run(_serve(conn, services, workloads, on_demand))


async def _serve(conn: Connection, services: int, workloads: int, on_demand: bool) -> None:
    t = time.perf_counter()
    state = build_state(services, workloads)
    build_s = time.perf_counter() - t
    # Wired as ControlPlane wires them (sidemesh/controlplane.py).
    cache = SnapshotCache()
    board = _TimedStatusBoard()
    # sotw and delta: the whole mesh to every proxy (the baseline); ondemand: each holds
    # the services it asked for (delta).
    publisher = Publisher(cache, on_demand=on_demand)
    publisher.update_state(state)
    ads = AdsServer(
        cache,
        board,
        on_connect=publisher.proxy_connected,
        on_disconnect=publisher.proxy_disconnected,
        on_demand=publisher.hosts_asked,
    )
    server = grpc.aio.server(options=GRPC_SERVER_OPTIONS)  # as sidemesh.controlplane
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(ads, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    conn.send(("ready", port, build_s, _usage()))
    profiler: cProfile.Profile | None = None
    try:
        while True:
            message = await asyncio.to_thread(conn.recv)
            try:
                command = message[0]
                if command == "stop":
                    conn.send(("stopped", _usage()))
                    return
                if command == "status":
                    conn.send(("status", *board.sync_counts()))
                elif command == "usage":
                    conn.send(("usage", _usage()))
                elif command in ("change", "policies", "edit_route"):
                    rtypes: tuple[ResourceType, ...]
                    if command == "change":
                        k = message[1]
                        new = changed_state(publisher.state, k, services, workloads)
                        what = change_target(services, workloads, k)
                        rtypes = (ResourceType.ENDPOINT,)
                    elif command == "policies":
                        new = with_policies(publisher.state, services)
                        what = f"+{services} HTTPRoutes, +{services} BackendPolicies"
                        # On demand a service's routes are its virtual hosts (VHDS).
                        rtypes = (
                            (ResourceType.VIRTUAL_HOST,)
                            if on_demand
                            else (ResourceType.CLUSTER, ResourceType.ROUTE)
                        )
                    else:
                        k = message[1]
                        new = edited_state(publisher.state, k, services)
                        i, weights = route_edit(services, k)
                        what = f"HTTPRoute {service_name(i)} {weights[0]}/{weights[1]}"
                        rtypes = (ResourceType.VIRTUAL_HOST if on_demand else ResourceType.ROUTE,)
                    connected, _ = board.sync_counts()
                    # On demand only the proxies holding the service are pushed anything:
                    # its endpoints to those holding it, its routes to those calling it.
                    if on_demand and command == "change":
                        connected = len(publisher.holding(_changed_service(services, workloads, k)))
                    elif on_demand and command == "edit_route":
                        connected = len(
                            _routing_to(publisher, ServiceKey(service_name(i), NAMESPACE))
                        )
                    change = _Change(
                        version=new.version,
                        workload=what,
                        expected=connected,
                        t0=time.monotonic(),
                        cpu0=time.process_time(),
                        rtypes=rtypes,
                    )
                    board.change = change
                    publisher.update_state(new)
                    change.publish_s = time.monotonic() - change.t0
                    conn.send(("changed", change.version, change.publish_s, change.expected))
                elif command == "change_status":
                    current = board.change
                    conn.send(("change_status", len(current.acked) if current else 0))
                elif command == "change_result":
                    current = board.change
                    if current is None:
                        raise BenchError("no change is being measured")
                    board.change = None
                    if current.cpu_s is None:
                        current.cpu_s = time.process_time() - current.cpu0
                    conn.send(
                        (
                            "change_result",
                            {
                                "version": current.version,
                                "workload": current.workload,
                                "expected": current.expected,
                                "publish_s": current.publish_s,
                                "latencies_s": sorted(current.acked.values()),
                                "responses": current.responses,
                                "resources": current.resources,
                                "cpu_s": current.cpu_s,
                            },
                        )
                    )
                elif command == "profile_start":
                    profiler = cProfile.Profile()
                    profiler.enable()
                    conn.send(("profiling",))
                elif command == "profile_stop":
                    text = ""
                    if profiler is not None:
                        profiler.disable()
                        profiler.dump_stats(message[1])
                        text = _profile_text(profiler)
                        profiler = None
                    conn.send(("profile", text))
                else:
                    raise BenchError(f"unknown command {command!r}")
            except (EOFError, BrokenPipeError):
                raise
            except Exception:
                conn.send(("error", traceback.format_exc()))
    finally:
        await server.stop(grace=1.0)


def _routing_to(publisher: Publisher, key: ServiceKey) -> list[str]:
    """The proxies on demand holding ``key``'s routes (not only its clusters, as the
    backend of another service's route)."""
    return [
        node
        for node in publisher.holding(key)
        if (publisher.held(node) or {}).get(key) is not Reason.BACKEND
    ]


def _changed_service(services: int, workloads: int, k: int) -> ServiceKey:
    """The service whose endpoint change ``k`` moves (as ``changed_state`` picks it)."""
    return ServiceKey(change_target(services, workloads, k).rsplit("-", 1)[0], NAMESPACE)


ASKS_PER_PROXY = (5, 20)
"""On demand: how many services each simulated sidecar's app calls."""


def _asks(node_ids: Sequence[str], services: int) -> dict[str, list[str]]:
    """Each proxy's Hosts (the same for a run: seeded by its node id)."""
    out = {}
    for node_id in node_ids:
        rng = random.Random(node_id)
        count = min(services, rng.randint(*ASKS_PER_PROXY))
        out[node_id] = [
            f"outbound-http/{service_name(i)}" for i in rng.sample(range(services), count)
        ]
    return out


def _profile_text(profiler: cProfile.Profile, limit: int = 30) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("cumulative").print_stats(limit)
    stats.sort_stats("tottime").print_stats(limit)
    return out.getvalue()


class _ServerHandle:
    """The parent's side of the control plane child: commands over a pipe, each
    answered within a timeout, and a ``close`` that always ends the process."""

    def __init__(self, services: int, workloads: int, on_demand: bool = False) -> None:
        ctx = mp.get_context("spawn")  # no fork: the parent holds gRPC state
        self.conn, child_conn = ctx.Pipe()
        self.process: BaseProcess = ctx.Process(
            target=_server_main,
            args=(child_conn, services, workloads, on_demand),
            name="sidemesh-bench-controlplane",
            daemon=True,
        )
        self.process.start()
        child_conn.close()
        self._lock = asyncio.Lock()

    def _exchange(self, message: tuple[Any, ...] | None, timeout: float) -> tuple[Any, ...]:
        what = message[0] if message else "start"
        try:
            if message is not None:
                self.conn.send(message)
            if not self.conn.poll(timeout):
                raise BenchError(f"the control plane did not answer {what!r} in {timeout:.0f} s")
            reply: tuple[Any, ...] = self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError) as exc:
            raise BenchError(
                f"the control plane process ended (exit code {self.process.exitcode})"
            ) from exc
        if reply[0] == "error":
            raise BenchError(f"the control plane failed on {what!r}:\n{reply[1]}")
        return reply

    async def call(
        self, message: tuple[Any, ...] | None, timeout: float = CALL_TIMEOUT_S
    ) -> tuple[Any, ...]:
        async with self._lock:
            return await asyncio.to_thread(self._exchange, message, timeout)

    async def close(self) -> dict[str, float] | None:
        final: dict[str, float] | None = None
        if self.process.is_alive():
            try:
                reply = await self.call(("stop",), STOP_TIMEOUT_S)
                # After a timed-out command its late answer comes first: then no usage.
                final = reply[1] if reply[0] == "stopped" else None
            except BenchError as exc:
                log.warning("%s", exc)
        await asyncio.to_thread(self.process.join, STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.terminate()
            await asyncio.to_thread(self.process.join, 5.0)
        if self.process.is_alive():
            self.process.kill()
            await asyncio.to_thread(self.process.join, 5.0)
        self.conn.close()
        return final


# --- 2. the xDS run (parent side) ---------------------------------------------------


@dataclass
class Options:
    services: int
    workloads: int
    proxies: int
    modes: list[str]
    changes: int
    policy_edits: int
    spacing_s: float
    streams_per_channel: int
    sync_timeout_s: float
    change_timeout_s: float
    profile: bool
    quick: bool


def default_sync_timeout(services: int, proxies: int) -> float:
    """Connecting is pushing every resource to every proxy: allow for its size."""
    return 60.0 + proxies * max(services, 100) / 5000


async def run_xds(opts: Options, mode: str, stamp: str, console: Console) -> dict[str, Any]:
    node_ids = [
        ProxyId(name, NAMESPACE).node_id
        for name in proxy_workloads(opts.services, opts.workloads, opts.proxies)
    ]
    server = _ServerHandle(opts.services, opts.workloads, on_demand=mode == "ondemand")
    channels: list[grpc.aio.Channel] = []
    tasks: list[asyncio.Task[None]] = []
    stats = ClientStats()
    result: dict[str, Any] = {"mode": mode, "proxies": opts.proxies}
    try:
        _, port, build_s, usage_start = await server.call(None, START_TIMEOUT_S)
        result["server_build_state_s"] = build_s
        result["usage_idle"] = usage_start
        console.print(f"  {mode}: control plane listening on 127.0.0.1:{port}; connecting")

        t_start = time.monotonic()
        channels, tasks = await run_clients(
            f"127.0.0.1:{port}",
            node_ids,
            delta=mode in ("delta", "ondemand"),
            stats=stats,
            streams_per_channel=opts.streams_per_channel,
            asks=_asks(node_ids, opts.services) if mode == "ondemand" else None,
        )
        deadline = t_start + opts.sync_timeout_s
        while True:
            _, connected, synced = await server.call(("status",))
            if synced >= opts.proxies:
                break
            if all(t.done() for t in tasks):
                raise BenchError(
                    f"{mode}: every client stream ended: {'; '.join(stats.errors[:5]) or '?'}"
                )
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{mode}: {synced}/{opts.proxies} proxies synced ({connected} connected)"
                    f" after {opts.sync_timeout_s:.0f} s (--sync-timeout)"
                )
            await asyncio.sleep(0.2)
        sync_s = time.monotonic() - t_start
        usage_synced = (await server.call(("usage",)))[1]
        result["sync"] = {
            "seconds": sync_s,
            "cpu_s": usage_synced["cpu_s"] - usage_start["cpu_s"],
            "bytes": stats.bytes_received,
            "bytes_by_type": dict(stats.bytes_by_type),
            "responses": stats.responses,
            "reconnects": stats.reconnects,
            "failures": dict(stats.failures),
        }
        result["usage_synced"] = usage_synced
        console.print(
            f"  {mode}: {opts.proxies} proxies synced in {sync_s:.2f} s; "
            f"making {opts.changes} endpoint changes"
        )

        if opts.profile:
            await server.call(("profile_start",))
        changes, result["overall"] = await _measure_changes(
            server,
            opts,
            stats,
            console,
            [("change", k) for k in range(opts.changes)],
            f"{mode}: change",
            opts.change_timeout_s,
        )
        if opts.profile:
            path = RESULTS_DIR / f"controlplane-{stamp}-{mode}.prof"
            _, text = await server.call(("profile_stop", str(path)))
            result["profile"] = {"file": str(path), "top": text}
        result["changes"] = changes
        result["usage_end"] = (await server.call(("usage",)))[1]
        if opts.policy_edits:
            result["usage_before_policies"] = result["usage_end"]
            console.print(
                f"  {mode}: adding one HTTPRoute and one BackendPolicy per service, then "
                f"making {opts.policy_edits} route weight edits"
            )
            applied, _ = await _measure_changes(
                server,
                opts,
                stats,
                console,
                [("policies",)],
                f"{mode}: policies",
                opts.sync_timeout_s,
            )
            result["policies_applied"] = applied[0]
            await _wait_synced(server, opts, mode, opts.sync_timeout_s)
            edits, overall = await _measure_changes(
                server,
                opts,
                stats,
                console,
                [("edit_route", k) for k in range(opts.policy_edits)],
                f"{mode}: route edit",
                opts.change_timeout_s,
            )
            result["policy_edits"] = {"changes": edits, "overall": overall}
            result["usage_end"] = (await server.call(("usage",)))[1]
        result["client_failures"] = dict(stats.failures)
        result["client_errors"] = stats.errors[:20]
    finally:
        with contextlib.suppress(Exception):
            await stop_clients(channels, tasks)
        final = await server.close()
        if final is not None:
            result["usage_end"] = final
    # Peak RSS of the endpoint-change run (as before policies were measured), then of
    # the whole run, policies included.
    before = result.get("usage_before_policies", result.get("usage_end", {}))
    result["peak_rss_mb"] = before.get("max_rss_mb", math.nan)
    result["peak_rss_with_policies_mb"] = (
        result.get("usage_end", {}).get("max_rss_mb", math.nan)
        if "usage_before_policies" in result
        else math.nan
    )
    return result


async def _wait_synced(server: _ServerHandle, opts: Options, mode: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        _, connected, synced = await server.call(("status",))
        if synced >= opts.proxies:
            return
        if time.monotonic() > deadline:
            raise BenchError(
                f"{mode}: {synced}/{opts.proxies} proxies synced ({connected} connected)"
                f" {timeout:.0f} s after the policies were added"
            )
        await asyncio.sleep(0.2)


async def _measure_changes(
    server: _ServerHandle,
    opts: Options,
    stats: ClientStats,
    console: Console,
    messages: list[tuple[Any, ...]],
    label: str,
    timeout: float,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each change of ``messages`` in turn, --spacing apart: per change and overall,
    the ACK latencies from the control plane's ``update_state`` to each proxy's ACK."""
    changes: list[dict[str, Any]] = []
    all_latencies: list[float] = []
    expected_total = 0
    for k, message in enumerate(messages):
        started = time.monotonic()
        bytes_before = stats.bytes_received
        reconnects_before = stats.reconnects
        client_cpu_before = time.process_time()
        _, _, _, connected = await server.call(message)
        # On demand the server counts the proxies holding the service: those alone.
        expected = connected if label.startswith("ondemand") else max(connected, opts.proxies)
        change_deadline = time.monotonic() + timeout
        while time.monotonic() < change_deadline:
            _, acked = await server.call(("change_status",))
            if acked >= expected:
                break
            await asyncio.sleep(POLL_S)
        _, outcome = await server.call(("change_result",))
        client_cpu = time.process_time() - client_cpu_before
        await asyncio.sleep(max(SETTLE_S, started + opts.spacing_s - time.monotonic()))
        latencies: list[float] = outcome.pop("latencies_s")
        all_latencies.extend(latencies)
        expected_total += expected
        changes.append(
            {
                **outcome,
                **summarize(latencies, expected),
                "push_bytes": stats.bytes_received - bytes_before,
                "client_cpu_s": client_cpu,
                "reconnects": stats.reconnects - reconnects_before,
            }
        )
        if len(latencies) < expected:
            console.print(
                f"  {label} {k}: only {len(latencies)}/{expected} proxies ACKed "
                f"within {timeout:.0f} s"
            )
    overall = {
        **summarize(all_latencies, expected_total),
        "push_bytes_mean": statistics.mean(c["push_bytes"] for c in changes)
        if changes
        else math.nan,
        "cpu_s_mean": statistics.mean(c["cpu_s"] for c in changes) if changes else math.nan,
        "publish_s_mean": statistics.mean(c["publish_s"] for c in changes) if changes else math.nan,
    }
    return changes, overall


# --- targets ------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    limit: str
    measured: str
    status: str
    """PASS, MISS, or NOT MEASURED."""
    note: str = ""


def _fmt_s(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "never (some proxies did not ACK)"
    return f"{value:.3f} s" if value >= 0.1 else f"{value * 1000:.1f} ms"


def evaluate_targets(
    opts: Options,
    reference: dict[str, Any],
    xds: dict[str, dict[str, Any]],
    policy_reference: dict[str, Any] | None = None,
) -> list[Target]:
    """PASS or MISS when the run has the target's size. Each figure only grows with
    proxies, services and endpoints, so a smaller run already over the limit is a MISS
    and a larger run under it a PASS; anything else is NOT MEASURED."""
    targets: list[Target] = []
    size = f"ran {opts.services} services x {opts.workloads} workloads, {opts.proxies} proxies"
    endpoints = opts.services * opts.workloads
    reference_endpoints = REFERENCE_SERVICES * REFERENCE_WORKLOADS

    def at_scale(
        name: str, limit: str, measured: str, over: bool, proxies: int, timed: bool = True
    ) -> Target:
        if timed and opts.profile:
            return Target(name, limit, measured, "NOT MEASURED", "--profile slows the server")
        run = (opts.proxies, opts.services, endpoints)
        wanted = (proxies, REFERENCE_SERVICES, reference_endpoints)
        if run == wanted:
            return Target(name, limit, measured, "MISS" if over else "PASS")
        smaller = all(r <= w for r, w in zip(run, wanted, strict=True))
        larger = all(r >= w for r, w in zip(run, wanted, strict=True))
        if smaller and over:
            return Target(name, limit, measured, "MISS", f"over the limit already; {size}")
        if larger and not over:
            return Target(name, limit, measured, "PASS", f"under the limit even so; {size}")
        return Target(
            name,
            limit,
            measured,
            "NOT MEASURED",
            f"needs {proxies:,} proxies, {REFERENCE_SERVICES:,} services x "
            f"{REFERENCE_WORKLOADS} workloads; {size}",
        )

    def absent(mode: str) -> str:
        return f"{mode} run failed" if mode in opts.modes else f"{mode} mode not run"

    for mode in ("sotw", "delta"):
        name = f"endpoint change → all 1,000 proxies ACKed ({mode})"
        if mode in xds:
            p99 = xds[mode]["overall"]["p99_s"]
            targets.append(at_scale(name, "p99 < 1 s", f"p99 {_fmt_s(p99)}", not p99 < 1.0, 1000))
        else:
            targets.append(Target(name, "p99 < 1 s", "-", "NOT MEASURED", absent(mode)))
    name = "endpoint change → 2,000 proxies ACKed (delta)"
    if "delta" in xds:
        p99 = xds["delta"]["overall"]["p99_s"]
        targets.append(at_scale(name, "p99 < 2 s", f"p99 {_fmt_s(p99)}", not p99 < 2.0, 2000))
    else:
        targets.append(Target(name, "p99 < 2 s", "-", "NOT MEASURED", absent("delta")))
    full = reference["first_proxy_s"]
    targets.append(
        Target(
            "full translation, 1,000 services / 10,000 endpoints",
            "< 1 s",
            _fmt_s(full),
            "PASS" if full < 1.0 else "MISS",
        )
    )
    retranslate = reference["endpoint_change_retranslate_median_s"]
    targets.append(
        Target(
            "one endpoint change re-translated for one proxy (1,000 services)",
            "< 10 ms",
            f"median {_fmt_s(retranslate)}, "
            f"max {_fmt_s(reference['endpoint_change_retranslate_max_s'])}",
            "PASS" if retranslate < 0.010 else "MISS",
        )
    )
    if policy_reference is not None:
        full = policy_reference["first_proxy_s"]
        targets.append(
            Target(
                "full translation with policies, 1,000 services / 10,000 endpoints, "
                "1 HTTPRoute + 1 BackendPolicy each",
                "< 1 s",
                _fmt_s(full),
                "PASS" if full < 1.0 else "MISS",
            )
        )
    name = "policy edit (one HTTPRoute's weights) → all 1,000 proxies ACKed (delta)"
    if "delta" in xds and "policy_edits" in xds["delta"]:
        p99 = xds["delta"]["policy_edits"]["overall"]["p99_s"]
        targets.append(at_scale(name, "p99 < 1 s", f"p99 {_fmt_s(p99)}", not p99 < 1.0, 1000))
    elif not opts.policy_edits:
        targets.append(Target(name, "p99 < 1 s", "-", "NOT MEASURED", "--policy-edits 0"))
    else:
        targets.append(Target(name, "p99 < 1 s", "-", "NOT MEASURED", absent("delta")))
    name = "control plane peak RSS at 1,000 services x 2,000 proxies"
    if xds:
        rss = max(r["peak_rss_mb"] for r in xds.values())
        targets.append(at_scale(name, "< 1 GB", f"{rss:.0f} MB", not rss < 1024, 2000, timed=False))
    else:
        targets.append(Target(name, "< 1 GB", "-", "NOT MEASURED", "no xDS run succeeded"))
    return targets


# --- output -------------------------------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / 2**20:.3f}" if n < 2**20 else f"{n / 2**20:.1f}"


def print_translation(console: Console, runs: list[dict[str, Any]]) -> None:
    table = Table(title="Translation (this process, fresh Translator)")
    for column in (
        "mesh",
        "build state",
        "first proxy (full)",
        "further proxy median",
        "endpoint change re-translate median / max",
        "new state (reuse_unchanged)",
        "services re-translated",
        "resources of one proxy",
    ):
        table.add_column(column, justify="right")
    for r in runs:
        counts = r["resources_first_proxy"]
        table.add_row(
            f"{r['services']} svc x {r['workloads']} wl",
            _fmt_s(r["build_state_s"]),
            _fmt_s(r["first_proxy_s"]),
            f"{_fmt_s(r['further_proxy_median_s'])} ({r['further_proxies']} proxies)",
            f"{_fmt_s(r['endpoint_change_retranslate_median_s'])} / "
            f"{_fmt_s(r['endpoint_change_retranslate_max_s'])}",
            _fmt_s(r["endpoint_change_new_state_median_s"]),
            str(r["endpoint_change_services_retranslated"]),
            " ".join(f"{k[0].upper()}={v}" for k, v in counts.items()),
        )
    console.print(table)


def print_policy_translation(console: Console, runs: list[dict[str, Any]]) -> None:
    table = Table(
        title="Translation with policies (one HTTPRoute and one BackendPolicy per service; "
        "this process, fresh Translator)"
    )
    for column in (
        "mesh",
        "build state",
        "first proxy (full)",
        "further proxy median",
        "route edit re-translate median / max",
        "new state (reuse_unchanged)",
        "services re-translated",
        "resources of one proxy",
        "route config",
    ):
        table.add_column(column, justify="right")
    for r in runs:
        counts = r["resources_first_proxy"]
        table.add_row(
            f"{r['services']} svc x {r['workloads']} wl",
            _fmt_s(r["build_state_s"]),
            _fmt_s(r["first_proxy_s"]),
            f"{_fmt_s(r['further_proxy_median_s'])} ({r['further_proxies']} proxies)",
            f"{_fmt_s(r['route_edit_retranslate_median_s'])} / "
            f"{_fmt_s(r['route_edit_retranslate_max_s'])}",
            _fmt_s(r["route_edit_new_state_median_s"]),
            str(r["route_edit_services_retranslated"]),
            " ".join(f"{k[0].upper()}={v}" for k, v in counts.items()),
            f"{_mb(r['bytes_first_proxy']['routes'])} MB",
        )
    console.print(table)


def _changes_table(
    title: str, changes: list[dict[str, Any]], o: dict[str, Any], what: str = "workload"
) -> Table:
    table = Table(title=title)
    for column in (
        "change",
        what,
        "ACKed",
        "p50",
        "p99",
        "max",
        "update_state",
        "push MB",
        "responses",
        "CP CPU s",
        "client CPU s",
    ):
        table.add_column(column, justify="right")
    for i, c in enumerate(changes):
        table.add_row(
            str(i),
            c["workload"],
            f"{c['acked']}/{c['expected']}",
            _fmt_s(c["p50_s"]),
            _fmt_s(c["p99_s"]),
            _fmt_s(c["max_s"]),
            _fmt_s(c["publish_s"]),
            _mb(c["push_bytes"]),
            str(c["responses"]),
            f"{c['cpu_s']:.2f}",
            f"{c['client_cpu_s']:.2f}",
        )
    table.add_row(
        "all",
        "",
        f"{o['acked']}/{o['expected']}",
        _fmt_s(o["p50_s"]),
        _fmt_s(o["p99_s"]),
        _fmt_s(o["max_s"]),
        _fmt_s(o["publish_s_mean"]) + " mean",
        _mb(o["push_bytes_mean"]) + " mean",
        "",
        f"{o['cpu_s_mean']:.2f} mean",
        "",
        style="bold",
    )
    return table


def print_xds(console: Console, opts: Options, r: dict[str, Any]) -> None:
    mode = r["mode"]
    sync = r["sync"]
    table = _changes_table(
        f"xDS {mode}: {opts.services} services x {opts.workloads} workloads, "
        f"{opts.proxies} proxies; ACK latency = server receives ACK of new endpoints "
        "- publisher.update_state",
        r["changes"],
        r["overall"],
    )
    console.print(table)
    console.print(
        f"  initial sync: {sync['seconds']:.2f} s, control plane CPU {sync['cpu_s']:.2f} s, "
        f"{_mb(sync['bytes'])} MB pushed in {sync['responses']} responses; "
        f"RSS after sync {r['usage_synced']['rss_mb']:.0f} MB "
        f"(peak so far {r['usage_synced']['max_rss_mb']:.0f} MB), "
        f"peak RSS by the end {r['peak_rss_mb']:.0f} MB"
    )
    if sync["reconnects"]:
        console.print(
            f"  {sync['reconnects']} streams failed while connecting and were opened again "
            f"after a backoff, as Envoy does ({sync['failures']}): gRPC core cancels calls "
            "the server has not picked up once more than grpc.server.max_pending_requests "
            "(default 1,000) wait"
        )
    late = sum(c["reconnects"] for c in r["changes"])
    if late:
        console.print(
            f"  [red]{late} streams failed during the changes[/]: "
            + escape(str(r["client_errors"]))
        )
    if "profile" in r:
        console.print(f"  profile of the change phase: {r['profile']['file']}")
        console.print(r["profile"]["top"], markup=False, highlight=False)
    if "policy_edits" in r:
        a = r["policies_applied"]
        console.print(
            f"  policies added ({a['workload']}; new clusters and routes for every proxy): "
            f"{a['acked']}/{a['expected']} proxies ACKed both, p50 {_fmt_s(a['p50_s'])}, "
            f"p99 {_fmt_s(a['p99_s'])}, {_mb(a['push_bytes'])} MB pushed"
        )
        edits = r["policy_edits"]
        console.print(
            _changes_table(
                f"xDS {mode}: policy edits, one HTTPRoute's weights each; ACK latency = "
                "server receives ACK of the new route configuration - publisher.update_state",
                edits["changes"],
                edits["overall"],
                what="edit",
            )
        )
        console.print(
            f"  peak RSS with policies {r['peak_rss_with_policies_mb']:.0f} MB "
            f"(before them {r['peak_rss_mb']:.0f} MB)"
        )


def print_targets(console: Console, targets: list[Target]) -> None:
    table = Table(title="Targets")
    for column in ("target", "limit", "measured", "result", "why not measured"):
        table.add_column(column)
    styles = {"PASS": "green", "MISS": "red", "NOT MEASURED": "yellow"}
    for t in targets:
        table.add_row(t.name, t.limit, t.measured, f"[{styles[t.status]}]{t.status}[/]", t.note)
    console.print(table)
    missing = [t.name for t in targets if t.status == "NOT MEASURED"]
    if missing:
        console.print(
            "Not measured at the size run (figures above are for the smaller mesh only): "
            + "; ".join(missing)
            + ". Measure them with --services 1000 --workloads 10 and --proxies 1000 "
            "(the 1,000-proxy targets) or --proxies 2000 (the 2,000-proxy ones).",
            markup=False,
        )


def summary_line(
    opts: Options,
    reference: dict[str, Any],
    xds: dict[str, dict[str, Any]],
    policy_reference: dict[str, Any] | None = None,
) -> str:
    """policy_ack_p99_s is the worst p99 of the route edits over the modes run;
    translate_policies_1000_s the full translation of the reference mesh with one
    HTTPRoute and one BackendPolicy per service."""
    p99 = max((r["overall"]["p99_s"] for r in xds.values()), default=math.nan)
    rss = max((r["peak_rss_mb"] for r in xds.values()), default=math.nan)
    rss_text = "nan" if math.isnan(rss) else f"{rss:.0f}"
    line = (
        f"controlplane: proxies={opts.proxies} ack_p99_s={p99:.2f} "
        f"translate_1000_s={reference['first_proxy_s']:.2f} rss_mb={rss_text}"
    )
    if policy_reference is not None:
        line += f" translate_policies_1000_s={policy_reference['first_proxy_s']:.2f}"
    if opts.policy_edits:
        edit_p99 = max(
            (r["policy_edits"]["overall"]["p99_s"] for r in xds.values() if "policy_edits" in r),
            default=math.nan,
        )
        line += f" policy_ack_p99_s={edit_p99:.2f}"
    return line


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


# --- main ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.controlplane",
        description="Control plane benchmark: translation and endpoint-change delivery "
        "over real xDS to simulated Envoys.",
    )
    parser.add_argument("--services", type=int, default=100, help="N services (default 100)")
    parser.add_argument(
        "--workloads", type=int, default=10, help="M workloads per service (default 10)"
    )
    parser.add_argument("--proxies", type=int, default=100, help="P simulated proxies (100)")
    parser.add_argument(
        "--mode", choices=["sotw", "delta", "ondemand", "both", "all"], default="all"
    )
    parser.add_argument("--changes", type=int, default=5, help="K endpoint changes (5)")
    parser.add_argument(
        "--policy-edits",
        type=int,
        default=5,
        help="after the endpoint changes: add one HTTPRoute and one BackendPolicy per "
        "service, then make this many route weight edits (5; 0: skip)",
    )
    parser.add_argument("--spacing", type=float, default=1.0, help="seconds between changes (1.0)")
    parser.add_argument("--streams-per-channel", type=int, default=50)
    parser.add_argument(
        "--sync-timeout",
        type=float,
        default=None,
        help="seconds for all proxies to sync (default grows with the mesh)",
    )
    parser.add_argument(
        "--change-timeout", type=float, default=60.0, help="seconds for one change (60)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the control plane during the changes (inflates latencies)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.services, args.workloads, args.proxies = 5, 3, 6
        args.changes, args.spacing = 2, 0.3
        args.policy_edits = min(args.policy_edits, 2)
    for name in ("services", "workloads", "proxies", "streams_per_channel"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.changes < 1:
        parser.error("--changes must be at least 1")
    if args.policy_edits < 0:
        parser.error("--policy-edits must be at least 0")
    if args.proxies > args.services * args.workloads:
        parser.error(
            f"--proxies {args.proxies} exceeds the mesh's {args.services * args.workloads} "
            "workloads (services x workloads)"
        )
    return Options(
        services=args.services,
        workloads=args.workloads,
        proxies=args.proxies,
        modes={"both": ["sotw", "delta"], "all": ["sotw", "delta", "ondemand"]}.get(
            args.mode, [args.mode]
        ),
        changes=args.changes,
        policy_edits=args.policy_edits,
        spacing_s=args.spacing,
        streams_per_channel=args.streams_per_channel,
        sync_timeout_s=args.sync_timeout or default_sync_timeout(args.services, args.proxies),
        change_timeout_s=args.change_timeout,
        profile=args.profile,
        quick=args.quick,
    )


async def _run(
    opts: Options, stamp: str, console: Console, errors: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Each mode in its own control plane child; a mode that fails is reported in
    ``errors`` and the next one still runs."""
    results: dict[str, dict[str, Any]] = {}
    for mode in opts.modes:
        try:
            results[mode] = await run_xds(opts, mode, stamp, console)
        except BenchError as exc:
            errors[mode] = str(exc)
            console.print(f"[red]xDS {mode} failed:[/] " + escape(str(exc)))
            continue
        print_xds(console, opts, results[mode])
    return results


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    console = Console(width=max(140, Console().width))
    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    console.print(
        f"control plane benchmark: {opts.services} services x {opts.workloads} workloads "
        f"({opts.services * opts.workloads} endpoints), {opts.proxies} proxies, "
        f"modes {'+'.join(opts.modes)}, {opts.changes} changes, "
        f"{opts.policy_edits} policy edits; {os.cpu_count()} CPUs"
    )

    runs = [measure_translation(opts.services, opts.workloads, opts.proxies)]
    if (opts.services, opts.workloads) == (REFERENCE_SERVICES, REFERENCE_WORKLOADS):
        reference = runs[0]
    else:
        gc.collect()
        reference = measure_translation(
            REFERENCE_SERVICES, REFERENCE_WORKLOADS, REFERENCE_PROXY_SAMPLE
        )
        runs.append(reference)
    print_translation(console, runs)
    gc.collect()
    policy_runs = [measure_policy_translation(opts.services, opts.workloads, opts.proxies)]
    if (opts.services, opts.workloads) == (REFERENCE_SERVICES, REFERENCE_WORKLOADS):
        policy_reference = policy_runs[0]
    else:
        gc.collect()
        policy_reference = measure_policy_translation(
            REFERENCE_SERVICES, REFERENCE_WORKLOADS, REFERENCE_PROXY_SAMPLE
        )
        policy_runs.append(policy_reference)
    print_policy_translation(console, policy_runs)
    gc.collect()

    errors: dict[str, str] = {}
    xds = asyncio.run(_run(opts, stamp, console, errors))

    targets = evaluate_targets(opts, reference, xds, policy_reference)
    print_targets(console, targets)
    summary = summary_line(opts, reference, xds, policy_reference)
    report = {
        "started": started.isoformat(),
        "options": asdict(opts),
        "host": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "translation": runs,
        "translation_with_policies": policy_runs,
        "xds": xds,
        "errors": errors,
        "targets": [asdict(t) for t in targets],
        "summary": summary,
    }
    path = RESULTS_DIR / f"controlplane-{stamp}.json"
    path.write_text(json.dumps(_json_safe(report), indent=2) + "\n", encoding="utf-8")
    console.print(f"results: {path}")
    print(summary, flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
