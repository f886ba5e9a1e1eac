"""``LocalMesh``: the workloads and gateways of a MeshState, running on this machine.

For each workload: its sidecar agent first, then, once the sidecar is ready (Envoy
has its config), the app, so the app's first request never meets a proxy that isn't
up. Stopping goes the other way: apps, then sidecars. A new MeshState starts what is
new, stops what is gone, and restarts what changed."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sidemesh.local.process import ProcessSpec, SpawnHook, Supervised
from sidemesh.model import Gateway, MeshState, Workload

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class LocalSettings:
    runtime_dir: Path
    """Logs and run files (``.sidemesh``)."""
    state_dir: Path
    """The control plane's state directory (CA, tokens)."""
    workdir: Path
    """Where app commands run: the directory of mesh.yaml."""
    xds_address: str
    ca_address: str
    socket_root: Path
    """A private temp directory for the sidecars' SDS sockets (Unix socket paths are
    short, so not under ``runtime_dir``); removed by ``up`` and ``down``."""
    xds_mode: str = "delta"

    @property
    def logs(self) -> Path:
        return self.runtime_dir / "logs"


@dataclass
class Member:
    """A workload (app + sidecar) or a gateway (sidecar only)."""

    name: str
    namespace: str
    kind: str
    spec: Workload | Gateway
    sidecar: Supervised
    app: Supervised | None = None
    ready: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        service = self.spec.service if isinstance(self.spec, Workload) else None
        return {
            "name": self.name,
            "namespace": self.namespace,
            "kind": self.kind,
            "service": service,
            "version": self.spec.labels.get("version") if isinstance(self.spec, Workload) else None,
            "ready": self.ready,
            "error": self.error,
            "app": self.app.to_json() if self.app is not None else None,
            "sidecar": self.sidecar.to_json(),
        }


Progress = Callable[[str], None]


class LocalMesh:
    def __init__(
        self,
        settings: LocalSettings,
        progress: Progress = lambda _: None,
        on_spawn: SpawnHook | None = None,
    ) -> None:
        self.settings = settings
        self.progress = progress
        self.on_spawn = on_spawn
        self.members: dict[tuple[str, str], Member] = {}
        self._lock = asyncio.Lock()

    async def apply(self, state: MeshState) -> None:
        """Make what runs match ``state``."""
        async with self._lock:
            wanted: dict[tuple[str, str], Workload | Gateway] = {
                **dict(state.workloads),
                **dict(state.gateways),
            }
            changed = [k for k, m in self.members.items() if k in wanted and wanted[k] != m.spec]
            gone = [k for k in self.members if k not in wanted]
            # A changed member keeps its name and ports: it must stop before it starts.
            await asyncio.gather(*(self._stop_member(self.members.pop(k)) for k in changed))
            # New ones start before the removed ones stop: make before break.
            new = [(k, spec) for k, spec in wanted.items() if k not in self.members]
            await asyncio.gather(*(self._start_member(state, k, spec) for k, spec in new))
            await asyncio.gather(*(self._stop_member(self.members.pop(k)) for k in gone))

    async def stop(self) -> None:
        async with self._lock:
            members = list(self.members.values())
            self.members.clear()
            # Apps first, so none sends a request into a sidecar that is going away.
            await asyncio.gather(*(m.app.stop() for m in members if m.app is not None))
            await asyncio.gather(*(m.sidecar.stop() for m in members))

    def status(self) -> list[dict[str, Any]]:
        return [m.to_json() for _, m in sorted(self.members.items())]

    # --- one member ------------------------------------------------------------
    async def _start_member(
        self, state: MeshState, key: tuple[str, str], spec: Workload | Gateway
    ) -> None:
        name, namespace = key
        kind = "workload" if isinstance(spec, Workload) else "gateway"
        sidecar = Supervised(self._sidecar_spec(spec, key), self.on_spawn)
        member = Member(name, namespace, kind, spec, sidecar)
        self.members[key] = member
        await member.sidecar.start()
        admin = spec.sidecar.admin_port if isinstance(spec, Workload) else spec.admin_port
        assert admin is not None
        try:
            await _wait_ready(member.sidecar, admin)
        except RuntimeError as exc:
            member.error = str(exc)
            log.error("%s: %s", name, exc)
            self.progress(f"[red]✗[/] {name}: {exc}")
            return
        if isinstance(spec, Workload):
            member.app = Supervised(self._app_spec(state, spec), self.on_spawn)
            await member.app.start()
            try:
                await _wait_listening(member.app, [p.app_port for p in spec.ports])
            except RuntimeError as exc:
                member.error = str(exc)
                log.error("%s: %s", name, exc)
                self.progress(f"[red]✗[/] {name}: {exc}")
                return
        member.ready = True
        self.progress(f"[green]✓[/] {kind} {name} is up")

    async def _stop_member(self, member: Member) -> None:
        if member.app is not None:
            await member.app.stop()
        await member.sidecar.stop()
        self.progress(f"stopped {member.name}")

    def _sidecar_spec(self, spec: Workload | Gateway, key: tuple[str, str]) -> ProcessSpec:
        name, namespace = key
        if isinstance(spec, Workload):
            service, admin = spec.service, spec.sidecar.admin_port
        else:
            service, admin = spec.name, spec.admin_port
        s = self.settings
        argv = [
            sys.executable, "-m", "sidemesh", "sidecar",
            "--workload", name, "--namespace", namespace, "--service", service,
            "--control-plane", s.xds_address, "--ca-address", s.ca_address,
            "--state-dir", str(s.state_dir.resolve()), "--admin-port", str(admin),
            "--xds-mode", s.xds_mode, "--log-level", "warning",
            "--socket-dir", str(s.socket_root / _short_name(name, namespace)),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIDEMESH_")}
        return ProcessSpec(
            name=f"{name} sidecar",
            argv=argv,
            env=env,
            cwd=s.workdir,
            log_path=s.logs / f"{name}.sidecar.log",
            stop_leader_first=True,
        )

    def _app_spec(self, state: MeshState, workload: Workload) -> ProcessSpec:
        assert workload.command is not None and workload.sidecar.outbound_port is not None
        values = {
            "port": str(workload.ports[0].app_port),
            "workload": workload.name,
            "service": workload.service,
            "version": workload.labels.get("version", ""),
            "namespace": workload.namespace or "",
        }
        command = workload.command
        parts = shlex.split(command) if isinstance(command, str) else list(command)
        argv = [part.format(**values) for part in parts]
        proxy = f"http://127.0.0.1:{workload.sidecar.outbound_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIDEMESH_")}
        env.update(
            {
                # The interpreter sidemesh runs on comes first, so `python` in a
                # command is one that works.
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                "PORT": values["port"],
                "SIDEMESH_WORKLOAD": workload.name,
                "SIDEMESH_SERVICE": workload.service,
                "SIDEMESH_NAMESPACE": values["namespace"],
                "HTTP_PROXY": proxy,
                "http_proxy": proxy,
                "NO_PROXY": "localhost,127.0.0.1",
                "no_proxy": "localhost,127.0.0.1",
            }
        )
        for wp in workload.ports:
            env[f"SIDEMESH_PORT_{_env_name(wp.name)}"] = str(wp.app_port)
        for upstream in workload.upstreams:
            env[f"SIDEMESH_UPSTREAM_{_env_name(upstream.service)}"] = (
                f"127.0.0.1:{upstream.local_port}"
            )
        env.update({k: v.format(**values) for k, v in workload.env.items()})
        return ProcessSpec(
            name=workload.name,
            argv=argv,
            env=env,
            cwd=self.settings.workdir,
            log_path=self.settings.logs / f"{workload.name}.log",
        )


def _short_name(name: str, namespace: str) -> str:
    """A few characters that name one sidecar: its SDS socket path must stay short."""
    return hashlib.sha256(f"{name}.{namespace}".encode()).hexdigest()[:12]


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_").replace(".", "_")


async def _wait_ready(sidecar: Supervised, admin_port: int) -> None:
    """Until Envoy's admin says LIVE: it has its listeners and clusters from the
    control plane. Fails fast if the sidecar exits."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if sidecar.exited.is_set():
                raise RuntimeError(
                    f"sidecar exited with status {sidecar.last_exit}; see {sidecar.spec.log_path}"
                )
            try:
                response = await client.get(f"http://127.0.0.1:{admin_port}/ready")
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(
        f"sidecar not ready after {READY_TIMEOUT_S:.0f}s; see {sidecar.spec.log_path}"
    )


async def _wait_listening(app: Supervised, ports: list[int]) -> None:
    """Until the app accepts connections on each of its ports: only then is the
    workload ready for traffic. Fails fast if the app exits."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    for port in ports:
        while True:
            if app.exited.is_set():
                raise RuntimeError(
                    f"app exited with status {app.last_exit} before listening on {port}; "
                    f"see {app.spec.log_path}"
                )
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"app does not listen on 127.0.0.1:{port} after {READY_TIMEOUT_S:.0f}s; "
                        f"see {app.spec.log_path}"
                    ) from None
                await asyncio.sleep(0.05)
