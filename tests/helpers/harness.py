"""A whole mesh on 127.0.0.1 for end-to-end tests: a real control plane (in a thread
of the test process, so a test can hook into it), real Envoy sidecars started with
``sidemesh sidecar``, and small HTTP backends."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
import yaml

from sidemesh.controlplane import ControlPlane
from sidemesh.settings import ControlPlaneSettings
from sidemesh.xds.publisher import ResourceHook
from tests.helpers.net import admin_get, backend, free_port

T = TypeVar("T")


class ControlPlaneThread:
    """A ``ControlPlane`` running in its own event loop on a background thread."""

    def __init__(self, settings: ControlPlaneSettings, hook: ResourceHook | None = None) -> None:
        self.control_plane = ControlPlane(settings, hook)
        self.loop = asyncio.new_event_loop()
        self._started: Future[None] = Future()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="control-plane", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.result(timeout=30)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.control_plane.start()
        except BaseException as exc:
            self._started.set_exception(exc)
            return
        self._started.set_result(None)
        await self._stop.wait()
        await self.control_plane.stop()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the control plane's loop and return its result."""

        async def wrapper() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout=30)

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=30)


@dataclass
class WorkloadSpec:
    name: str
    service: str
    port: int = field(default_factory=free_port)
    app_port: int = field(default_factory=free_port)
    outbound_port: int = field(default_factory=free_port)
    socket_dir: Path | None = None
    """The sidecar's private directory of sockets (set by ``Mesh.add``)."""
    labels: dict[str, str] = field(default_factory=dict)
    upstreams: dict[str, int] = field(default_factory=dict)
    """Service → the local port of the sidecar that leads to it (Host passed as sent)."""
    calls: list[str] = field(default_factory=list)
    """Services its sidecar holds from the start (others: learned at the first call)."""

    @property
    def admin_socket(self) -> Path:
        """Its Envoy's admin (a Unix socket, 0600)."""
        assert self.socket_dir is not None
        return self.socket_dir / "admin.sock"

    def admin(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        """``GET path`` of its Envoy's admin."""
        return admin_get(self.admin_socket, path, params)

    def to_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "service": self.service,
            "labels": self.labels,
            "port": self.port,
            "appPort": self.app_port,
            "sidecar": {"outboundPort": self.outbound_port},
        }
        if self.calls:
            out["calls"] = self.calls
        if self.upstreams:
            out["upstreams"] = [
                {"service": service, "localPort": port} for service, port in self.upstreams.items()
            ]
        return out


class Mesh:
    """Services ``a`` (port 8080) and ``b`` (port 9080) and whatever workloads a test adds."""

    SERVICES: ClassVar[dict[str, int]] = {"a": 8080, "b": 9080}
    opened: ClassVar[list[Mesh]] = []
    """Every mesh a test made: the e2e conftest closes them all after each test, so a
    test that builds its own cannot leave sidecars running."""

    def __init__(
        self, tmp_path: Path, xds_mode: str = "delta", cert_lifetime_s: float = 3600
    ) -> None:
        Mesh.opened.append(self)
        self.tmp_path = tmp_path
        self.state_dir = tmp_path / "state"
        self.cert_lifetime_s = cert_lifetime_s
        self.mtls: str | None = None
        self.service_mtls: dict[str, str] = {}
        self.path = tmp_path / "mesh.yaml"
        self.xds_mode = xds_mode
        self.workloads: dict[str, WorkloadSpec] = {}
        self.sidecars: dict[str, subprocess.Popen[bytes]] = {}
        self.control_plane: ControlPlaneThread | None = None
        self._stack = ExitStack()
        # Unix socket paths are limited to about 100 bytes: not under tmp_path.
        self.socket_root = Path(tempfile.mkdtemp(prefix="smt-"))
        self._stack.callback(shutil.rmtree, self.socket_root, True)
        self.version = 0
        self.extra_services: list[dict[str, Any]] = []
        """Services beyond a and b, as mesh.yaml writes them (``selector`` and all)."""
        self.policies: list[str] = []
        """Policy documents (YAML text) written after mesh.yaml's first document."""
        self.telemetry_interval_s = 1.0
        """Scrapes of the proxies' stats: quick, so tests see signals within seconds."""
        self.mesh_settings: dict[str, Any] = {}
        """More of mesh.yaml's ``mesh:`` (``outboundTrafficPolicy``, say)."""

    # --- mesh.yaml -------------------------------------------------------
    def add(self, name: str, service: str, **labels: str) -> WorkloadSpec:
        spec = WorkloadSpec(
            name=name, service=service, labels=labels, socket_dir=self.socket_root / name
        )
        self.workloads[name] = spec
        return spec

    def document(self) -> dict[str, Any]:
        mesh: dict[str, Any] = {"trustDomain": "test.local"}
        if self.mtls:
            mesh["mtls"] = self.mtls
        mesh.update(self.mesh_settings)
        services = []
        for name, port in self.SERVICES.items():
            service: dict[str, Any] = {"name": name, "ports": [{"port": port}]}
            if name in self.service_mtls:
                service["mtls"] = self.service_mtls[name]
            services.append(service)
        services += self.extra_services
        return {
            "mesh": mesh,
            "services": services,
            "workloads": [w.to_yaml() for w in self.workloads.values()],
        }

    def write(self, text: str | None = None) -> None:
        """Replace mesh.yaml atomically, as an editor that saves by rename does; with
        the control plane running, return once it has accepted or refused the edit."""
        before = self._source_position()
        tmp = self.path.with_suffix(".tmp")
        if text is None:
            text = yaml.safe_dump(self.document())
            text += "".join(f"---\n{policy.strip()}\n" for policy in self.policies)
        tmp.write_text(text)
        os.replace(tmp, self.path)
        if before is None:
            return
        deadline = time.monotonic() + 10
        while self._source_position() == before:
            assert time.monotonic() < deadline, "the control plane never read the edit"
            time.sleep(0.02)

    def _accepted_version(self) -> int:
        if self.control_plane is None or not self.control_plane.running:
            return 0
        aggregator = self.control_plane.control_plane.aggregator
        return self.control_plane.call(lambda: aggregator.state.version if aggregator.state else 0)

    def _source_position(self) -> tuple[int, int] | None:
        """(mesh version, refused edits of its file source) of the running control plane."""
        if self.control_plane is None or not self.control_plane.running:
            return None
        aggregator = self.control_plane.control_plane.aggregator
        source = self.control_plane.control_plane.source
        return self.control_plane.call(
            lambda: (aggregator.state.version if aggregator.state else 0, source.rejected)
        )

    # --- processes -----------------------------------------------------------
    def start_control_plane(
        self,
        hook: ResourceHook | None = None,
        xds_port: int = 0,
        api_port: int = 0,
        ca_port: int = 0,
    ) -> ControlPlaneThread:
        self.write()
        settings = ControlPlaneSettings(
            config=self.path,
            xds_port=xds_port,
            api_port=api_port,
            ca_port=ca_port,
            poll_interval_s=0.05,
            state_dir=self.state_dir,
            cert_lifetime_s=self.cert_lifetime_s,
            telemetry_interval_s=self.telemetry_interval_s,
        )
        self.control_plane = ControlPlaneThread(settings, hook)
        self.control_plane.start()
        self._stack.callback(self.control_plane.stop)
        return self.control_plane

    def restart_control_plane(self, xds_port: int, api_port: int, ca_port: int) -> None:
        """A new control plane on the same ports and state directory."""
        self.start_control_plane(xds_port=xds_port, api_port=api_port, ca_port=ca_port)

    @property
    def api_url(self) -> str:
        assert self.control_plane is not None
        return f"http://127.0.0.1:{self.control_plane.control_plane.api_port}"

    def start_all(
        self,
        apps: Mapping[str, Mapping[str, Any]] | None = None,
        route: tuple[str, str] | None = ("a-1", "b"),
    ) -> None:
        """The control plane, then every workload's app (``apps``: ``backend`` options
        by workload) and sidecar; returns once every sidecar is synced and, with
        ``route`` (caller, service), once the caller gets a 200 from the service."""
        self.start_control_plane()
        for name in self.workloads:
            self.start_app(name, **(apps or {}).get(name, {}))
            self.start_sidecar(name)
        self.wait_synced()
        if route is not None:
            self.wait_for_route(*route)

    def start_app(self, name: str, **options: Any) -> None:
        """``options``: ``backend``'s (a delay, a status to answer, a list to record
        requests in)."""
        spec = self.workloads[name]
        self._stack.enter_context(backend(name, spec.app_port, **options))

    def start_sidecar(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        assert self.control_plane is not None
        cp = self.control_plane.control_plane
        spec = self.workloads[name]
        token = self.state_dir / "tokens" / f"{name}.default.token"
        deadline = time.monotonic() + 20
        while not token.exists():  # made when the control plane loads the workload
            assert time.monotonic() < deadline, f"no bootstrap token for {name}"
            time.sleep(0.02)
        log = open(self.tmp_path / f"{name}.sidecar.log", "wb")  # noqa: SIM115
        self._stack.callback(log.close)
        env = {**os.environ, "SIDEMESH_LOG_FORMAT": "json"}
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sidemesh",
                "sidecar",
                "--workload",
                name,
                "--service",
                spec.service,
                "--control-plane",
                f"127.0.0.1:{cp.xds_port}",
                "--socket-dir",
                str(spec.socket_dir),
                "--xds-mode",
                self.xds_mode,
                "--workdir",
                str(self.tmp_path / name),
                "--state-dir",
                str(self.state_dir),
                "--ca-address",
                f"127.0.0.1:{cp.ca_port}",
                "--log-level",
                "info",
                # Tests stop sidecars one after another; the drain is tested on its own.
                "--drain-seconds",
                "0",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.sidecars[name] = process
        self._stack.callback(self._stop_process, process)
        return process

    def start_workload(self, name: str) -> None:
        self.start_app(name)
        self.start_sidecar(name)

    @staticmethod
    def _stop_process(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def sidecar_log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.sidecar.log").read_text(errors="replace")

    def close(self) -> None:
        self._stack.close()

    # --- observing ------------------------------------------------------------
    def api(self, path: str) -> Any:
        return httpx.get(self.api_url + path, timeout=5).json()

    def proxies(self) -> dict[str, Any]:
        return {p["node"]: p for p in self.api("/v1/proxies")["proxies"]}

    def wait_synced(self, names: list[str] | None = None, timeout: float = 20) -> None:
        """Until the named sidecars (default: all started) have ACKed everything of the
        current mesh version."""
        wanted = [f"sidecar~{n}~default" for n in (names or list(self.sidecars))]
        deadline = time.monotonic() + timeout
        while True:
            # The latest accepted state, which the control plane may not have pushed
            # yet (it merges bursts of edits), not only the one it serves now.
            version = max(self.api("/v1/state")["version"], self._accepted_version())
            proxies = self.proxies()
            if all(
                n in proxies
                and proxies[n]["connected"]
                and proxies[n]["synced"]
                and proxies[n]["stateVersion"] >= version
                # Endpoints only once it holds a service; virtual hosts on demand (delta).
                and {"clusters", "listeners", "routes"} <= set(proxies[n]["types"])
                for n in wanted
            ):
                return
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {n} (exit {self.sidecars[n].poll()}):\n{self.sidecar_log(n)[-3000:]}"
                    for n in (names or list(self.sidecars))
                )
                raise AssertionError(
                    f"sidecars not in sync with mesh version {version}: {proxies}\n{logs}"
                )
            time.sleep(0.05)

    def request(self, via: str, host: str, path: str = "/", timeout: float = 5) -> httpx.Response:
        """An HTTP request from workload ``via``'s app, sent to its sidecar's outbound listener."""
        port = self.workloads[via].outbound_port
        return httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}, timeout=timeout)

    def wait_for_route(self, via: str, host: str, timeout: float = 20) -> httpx.Response:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                response = self.request(via, host)
                if response.status_code == 200:
                    return response
                last = response
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.05)
        raise AssertionError(f"no 200 from {host} via {via} within {timeout}s; last: {last!r}")
