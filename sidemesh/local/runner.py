"""``LocalMesh``: the workloads and gateways of a MeshState, running on this machine.

For each workload: its sidecar agent first, then, once the sidecar is ready (Envoy
has its config), the app, so the app's first request never meets a proxy that isn't
up. ``stop`` goes the other way: apps, then sidecars. A new MeshState starts what is
new, stops what is gone (its sidecar first, so it drains while its app still answers
what it was sent), and replaces what changed.

A changed workload (a release: its command, env or labels) is replaced one replica of
its service at a time, each new replica ready before the next old one goes, so a
service with more than one replica keeps answering throughout (its callers retry a
refused connection on another replica). The replica's name and ports stay the same
(the plan gives them), so its old processes stop before the new ones start: first
its sidecar, which drains while the old app still answers what it was sent, then the
old app. A new replica that does not become ready halts the release of its service,
as does a replica of the service that does not serve (taking another down would leave
it short): the others keep running their previous spec, the error says which replica
and why, and the release is tried again every few seconds, so it resumes once that
replica serves."""

from __future__ import annotations

import asyncio
import contextlib
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

from sidemesh.agent.sidecar import ADMIN_SOCKET
from sidemesh.local.process import ProcessSpec, SpawnHook, Supervised
from sidemesh.model import Gateway, MeshState, Workload
from sidemesh.telemetry.admin import admin_client

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
RELEASE_RETRY_S = 3.0
"""How often a release that waits on a replica looks again."""


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
    stopping: bool = False

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
        self._resume: asyncio.Task[None] | None = None
        """Applies the last state again while a release waits on a replica."""
        self._generation = 0
        """Counts the states given to ``apply``: a resume of an older one is dropped."""
        self._release_notes: dict[str, tuple[str, ...]] = {}
        """Per service whose release is not finished, the replicas it waits on, as last
        said (said once, not at every retry)."""

    async def apply(self, state: MeshState) -> None:
        """Make what runs match ``state``."""
        self._generation += 1
        async with self._lock:
            await self._apply(state)

    async def _apply(self, state: MeshState) -> None:
        wanted: dict[tuple[str, str], Workload | Gateway] = {
            **dict(state.workloads),
            **dict(state.gateways),
        }
        changed = [k for k, m in self.members.items() if k in wanted and wanted[k] != m.spec]
        gone = [k for k in self.members if k not in wanted]
        # New ones start before the removed ones stop: make before break.
        new = [(k, spec) for k, spec in wanted.items() if k not in self.members]
        await asyncio.gather(*(self._start_member(state, k, spec) for k, spec in new))
        groups = _by_service(self.members, changed)
        results = await asyncio.gather(
            *(self._stop_member(k) for k in gone),
            *(self._release(state, service, keys, wanted) for service, keys in groups.items()),
        )
        for service in set(self._release_notes) - set(groups):
            del self._release_notes[service]  # nothing of it changes any more
        if not all(results[len(gone) :]):
            # A release waits on a replica that does not serve: look again in a while,
            # so that it resumes once that replica serves, with no edit needed.
            previous = self._resume
            if previous is not None and previous is not asyncio.current_task():
                previous.cancel()  # it waits for the lock held here: it has not begun
            self._resume = asyncio.create_task(
                self._apply_later(state, self._generation), name="resume release"
            )

    async def _apply_later(self, state: MeshState, generation: int) -> None:
        await asyncio.sleep(RELEASE_RETRY_S)
        async with self._lock:
            if generation != self._generation:
                return  # a newer state was applied meanwhile: it decides
            try:
                await self._apply(state)
            except Exception:  # a bug here must not go unsaid, nor stop the next plan
                log.exception("could not resume a release; the workloads keep running as they are")

    async def stop(self) -> None:
        if self._resume is not None:  # stopping interrupts a release, as it does an apply
            self._resume.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resume
        async with self._lock:
            members = list(self.members.values())
            # Apps first, so none sends a request into a sidecar that is going away.
            await asyncio.gather(*(m.app.stop() for m in members if m.app is not None))
            await asyncio.gather(*(m.sidecar.stop() for m in members))
            self.members.clear()

    def status(self) -> list[dict[str, Any]]:
        return [m.to_json() for _, m in sorted(self.members.items())]

    # --- one member ------------------------------------------------------------
    async def _release(
        self,
        state: MeshState,
        service: str,
        keys: list[tuple[str, str]],
        wanted: dict[tuple[str, str], Workload | Gateway],
    ) -> bool:
        """Replace the changed replicas ``keys`` of one service one at a time: stop the
        old one, start the new one, wait until it is ready, then the next. False if
        the release stopped before the end (said why), to be resumed later."""
        # A replica that serves nothing is replaced first: that costs no capacity.
        serving = {k: await self._serving(self.members[k]) for k in keys}
        keys = sorted(keys, key=lambda k: (serving[k], k))
        for done, key in enumerate(keys):
            left = len(keys) - done
            if await self._serving(self.members[key]):
                # Taking a serving replica down is safe only if every other one of
                # its service serves meanwhile (replicas being removed do not count).
                group = _service_of(self.members[key].spec, key)
                others = [
                    m
                    for k, m in self.members.items()
                    if k != key and k in wanted and _service_of(m.spec, k) == group
                ]
                down = tuple([m.name for m in others if not await self._serving(m)])
                if down:
                    self._release_note(
                        service,
                        down,
                        f"release of {service} waits with {left} replica(s) on their "
                        f"previous spec: {', '.join(down)} does not serve, and replacing "
                        f"{key[0]} now would leave the service short; it resumes once "
                        f"{', '.join(down)} serves (see `sidemesh status` and `sidemesh "
                        "logs NAME`), or with the next edit of mesh.yaml",
                    )
                    return False
            await self._stop_member(key)
            member = await self._start_member(state, key, wanted[key])
            if not member.ready:
                rest = [k[0] for k in keys[done + 1 :]]
                self._release_note(
                    service,
                    (key[0],),
                    f"release of {service} halted: {key[0]} did not become ready with its "
                    f"new spec ({member.error})"
                    + (
                        f"; {', '.join(rest)} keep running their previous spec until "
                        f"{key[0]} serves, or until the next edit of mesh.yaml"
                        if rest
                        else ""
                    ),
                )
                return False
            self.progress(f"replaced {key[0]} ({done + 1} of {len(keys)} of {service})")
        if self._release_notes.pop(service, None) is not None:
            # At the level of the error it clears, so whoever saw that sees this.
            log.warning("release of %s resumed and finished", service)
            self.progress(f"[green]✓[/] release of {service} resumed and finished")
        return True

    async def _serving(self, member: Member) -> bool:
        """Whether a member answers now: its Envoy is LIVE and its app listens. One
        that failed to start and has come up since (its app restarted) is ready now."""
        spec = member.spec
        try:
            async with admin_client(self._admin_socket(member.name, member.namespace)) as client:
                if (await client.get("/ready")).status_code != 200:
                    return False
            if isinstance(spec, Workload):
                for port in spec.ports:
                    _, writer = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", port.app_port), 1.0
                    )
                    writer.close()
        except (httpx.HTTPError, OSError, TimeoutError):
            return False
        if not member.ready and not member.stopping:
            member.ready, member.error = True, None
            self.progress(f"[green]✓[/] {member.kind} {member.name} is up")
        return True

    def _release_note(self, service: str, waiting_on: tuple[str, ...], message: str) -> None:
        """Say why a release is not finished, once per cause (it is retried every few
        seconds)."""
        if self._release_notes.get(service) != waiting_on:
            self._release_notes[service] = waiting_on
            log.error("%s", message)
            self.progress(f"[red]✗[/] {message}")

    async def _start_member(
        self, state: MeshState, key: tuple[str, str], spec: Workload | Gateway
    ) -> Member:
        name, namespace = key
        kind = "workload" if isinstance(spec, Workload) else "gateway"
        sidecar = Supervised(self._sidecar_spec(spec, key), self.on_spawn)
        member = Member(name, namespace, kind, spec, sidecar)
        self.members[key] = member
        await member.sidecar.start()
        try:
            await _wait_ready(member.sidecar, self._admin_socket(name, namespace))
        except RuntimeError as exc:
            member.error = str(exc)
            log.error("%s: %s", name, exc)
            self.progress(f"[red]✗[/] {name}: {exc}")
            return member
        if isinstance(spec, Workload):
            member.app = Supervised(self._app_spec(state, spec), self.on_spawn)
            await member.app.start()
            try:
                await _wait_listening(member.app, [p.app_port for p in spec.ports])
            except RuntimeError as exc:
                member.error = str(exc)
                log.error("%s: %s", name, exc)
                self.progress(f"[red]✗[/] {name}: {exc}")
                return member
        member.ready = True
        self.progress(f"[green]✓[/] {kind} {name} is up")
        return member

    async def _stop_member(self, key: tuple[str, str]) -> None:
        """Stop a member that is removed or replaced. Its sidecar first: it drains
        (callers are told to close their connections, requests in flight finish)
        while the app still answers them; then the app, which nothing reaches any
        more. The member stays listed until it is stopped, so that a ``stop`` that
        interrupts this finds it."""
        member = self.members[key]
        member.ready, member.stopping = False, True
        await member.sidecar.stop()
        if member.app is not None:
            await member.app.stop()
        if self.members.get(key) is member:
            del self.members[key]
        self.progress(f"stopped {member.name}")

    def _socket_dir(self, name: str, namespace: str) -> Path:
        """The sidecar's private directory of sockets (SDS, Envoy's admin)."""
        return self.settings.socket_root / _short_name(name, namespace)

    def _admin_socket(self, name: str, namespace: str) -> str:
        return str(self._socket_dir(name, namespace) / ADMIN_SOCKET)

    def _sidecar_spec(self, spec: Workload | Gateway, key: tuple[str, str]) -> ProcessSpec:
        name, namespace = key
        service = spec.service if isinstance(spec, Workload) else spec.name
        s = self.settings
        argv = [
            sys.executable, "-m", "sidemesh", "sidecar",
            "--workload", name, "--namespace", namespace, "--service", service,
            "--control-plane", s.xds_address, "--ca-address", s.ca_address,
            "--state-dir", str(s.state_dir.resolve()),
            "--xds-mode", s.xds_mode, "--log-level", "warning",
            "--socket-dir", str(self._socket_dir(name, namespace)),
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


def _service_of(spec: Workload | Gateway, key: tuple[str, str]) -> tuple[str, str]:
    """What a member serves, for releases: its service; a gateway is one of a kind."""
    name, namespace = key
    if isinstance(spec, Workload):
        return spec.service, namespace
    return f"gateway {name}", namespace


def _by_service(
    members: dict[tuple[str, str], Member], keys: list[tuple[str, str]]
) -> dict[str, list[tuple[str, str]]]:
    """``keys``, grouped by the service each serves (named ``name.namespace``)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for key in keys:
        service, namespace = _service_of(members[key].spec, key)
        groups.setdefault(f"{service}.{namespace}", []).append(key)
    return groups


def _short_name(name: str, namespace: str) -> str:
    """A few characters that name one sidecar: its SDS socket path must stay short."""
    return hashlib.sha256(f"{name}.{namespace}".encode()).hexdigest()[:12]


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_").replace(".", "_")


async def _wait_ready(sidecar: Supervised, admin_socket: str) -> None:
    """Until Envoy's admin says LIVE: it has its listeners and clusters from the
    control plane. Fails fast if the sidecar exits."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    async with admin_client(admin_socket) as client:
        while time.monotonic() < deadline:
            if sidecar.exited.is_set():
                raise RuntimeError(
                    f"sidecar exited with status {sidecar.last_exit}; see {sidecar.spec.log_path}"
                )
            try:
                response = await client.get("/ready")
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
