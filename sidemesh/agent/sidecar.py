"""Run one sidecar: write its bootstrap, start Envoy, forward signals, exit as Envoy did."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import random
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from sidemesh.agent.certificates import (
    CertificateRequestFailed,
    WorkloadCertificate,
    request_certificate,
)
from sidemesh.agent.envoy_binary import find_envoy
from sidemesh.agent.sds import SdsServer
from sidemesh.envoy.bootstrap import BootstrapParams, bootstrap, to_json

log = logging.getLogger(__name__)

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def write_bootstrap(params: BootstrapParams, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{params.proxy.workload}.{params.proxy.namespace}.bootstrap.json"
    path.write_text(json.dumps(to_json(bootstrap(params)), indent=2))
    return path


def envoy_command(
    bootstrap_path: Path, log_level: str = "info", concurrency: int | None = None
) -> list[str]:
    """``concurrency``: Envoy's worker threads (Envoy's default: one per core)."""
    command = [
        str(find_envoy()),
        "-c",
        str(bootstrap_path),
        "-l",
        log_level,
        # Many sidecars share one host in local mode; hot restart's shared memory
        # would make the second one fail to start.
        "--disable-hot-restart",
    ]
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    # The kernel sends Envoy SIGTERM if the agent dies, even by SIGKILL, so no Envoy is
    # left running without its agent. setpriv (util-linux) sets that and execs Envoy;
    # doing it in a preexec_fn would fork a process that runs gRPC threads.
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        command = [setpriv, "--pdeathsig", "TERM", "--", *command]
    return command


@dataclass(frozen=True)
class IdentityParams:
    """How the agent gets its certificate."""

    ca_url: str
    """The control plane's signing endpoint, https://HOST:PORT."""
    token_file: Path
    """The workload's bootstrap token (read by the agent only; Envoy never sees it)."""
    ca_bundle: Path
    """The mesh's root certificate, to check the CA's own certificate."""


class Agent:
    """Gets the workload certificate, serves it to Envoy over SDS, renews it at 50-80%
    of its lifetime, and supervises Envoy. Exits with Envoy's status."""

    def __init__(
        self,
        params: BootstrapParams,
        identity: IdentityParams,
        workdir: Path,
        log_level: str = "info",
        concurrency: int | None = None,
    ) -> None:
        self.params = params
        self.identity = identity
        self.workdir = workdir
        self.log_level = log_level
        self.concurrency = concurrency
        self.sds = SdsServer()
        self.certificate: WorkloadCertificate | None = None
        self.rotations = 0

    async def run(self) -> int:
        token = self.identity.token_file.read_text().strip()
        self.certificate = await self._obtain(token, deadline=None)
        self.sds.update(self.certificate)
        await self.sds.start(self.params.sds_socket)
        path = write_bootstrap(self.params, self.workdir)
        envoy = await asyncio.create_subprocess_exec(
            *envoy_command(path, self.log_level, self.concurrency),
            env=_envoy_environment(),
        )
        log.info(
            "Envoy started for %s (pid %d): admin http://127.0.0.1:%d, control plane %s:%d",
            self.params.proxy,
            envoy.pid,
            self.params.admin_port,
            self.params.control_plane_host,
            self.params.control_plane_port,
        )
        loop = asyncio.get_running_loop()
        for sig in FORWARDED_SIGNALS:
            loop.add_signal_handler(sig, _forward, envoy, sig)
        renewer = asyncio.create_task(self._renew_forever(token))
        try:
            code = await envoy.wait()
        finally:
            try:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
            finally:
                for sig in FORWARDED_SIGNALS:
                    loop.remove_signal_handler(sig)
                await self.sds.stop()
        log.info("Envoy for %s exited with status %d", self.params.proxy, code)
        return 128 - code if code < 0 else code

    async def _obtain(self, token: str, deadline: dt.datetime | None) -> WorkloadCertificate:
        """Ask until the CA answers; give up on a refusal, or at ``deadline``."""
        delay = 0.2
        while True:
            try:
                return await request_certificate(
                    self.identity.ca_url, token, self.identity.ca_bundle
                )
            except CertificateRequestFailed as exc:
                now = _now()
                if not exc.retryable or (deadline is not None and now >= deadline):
                    raise
                log.warning("%s; trying again in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _renew_forever(self, token: str) -> None:
        while True:
            assert self.certificate is not None
            cert = self.certificate
            # Renew somewhere in 50-80% of the lifetime: early enough to survive a
            # CA outage, spread out so many workloads don't ask at once.
            at = cert.received_at + cert.lifetime * random.uniform(0.5, 0.8)
            await asyncio.sleep(max((at - _now()).total_seconds(), 0.0))
            renewed = await self._renew(token, cert)
            self.certificate = renewed
            self.sds.update(renewed)
            self.rotations += 1
            log.info(
                "rotated certificate of %s (rotation %d): serial %s, expires %s",
                self.params.proxy,
                self.rotations,
                renewed.serial,
                renewed.not_after.isoformat(timespec="seconds"),
                extra={"rotation": self.rotations, "serial": renewed.serial},
            )

    async def _renew(self, token: str, current: WorkloadCertificate) -> WorkloadCertificate:
        """Ask until the CA gives a new certificate, backing off with jitter. A refusal
        is retried too (the workload may come back into the mesh), only more slowly."""
        delay = RENEW_RETRY_FIRST_S
        while True:
            try:
                return await request_certificate(
                    self.identity.ca_url, token, self.identity.ca_bundle
                )
            except CertificateRequestFailed as exc:
                problem, retryable = str(exc), exc.retryable
            except Exception as exc:  # a bug must not silently stop renewal
                log.exception("unexpected error renewing the certificate of %s", self.params.proxy)
                problem, retryable = repr(exc), True
            left = (current.not_after - _now()).total_seconds()
            cap = RENEW_RETRY_MAX_S if retryable else RENEW_REFUSED_RETRY_S
            if left > 0:
                cap = min(cap, max(left / 4, RENEW_RETRY_FIRST_S))
            log.error(
                "could not renew the certificate of %s (%s); trying again in %.0fs: %s",
                self.params.proxy,
                f"expires in {left:.0f}s" if left > 0 else "EXPIRED: peers refuse it",
                min(delay, cap),
                problem,
            )
            await asyncio.sleep(min(delay, cap) * random.uniform(0.8, 1.2))
            delay = min(delay * 2, cap)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


RENEW_RETRY_FIRST_S = 1.0
RENEW_RETRY_MAX_S = 60.0
RENEW_REFUSED_RETRY_S = 300.0


def run_sidecar(
    params: BootstrapParams,
    identity: IdentityParams,
    workdir: Path,
    log_level: str = "info",
    concurrency: int | None = None,
) -> int:
    """Run the agent and its Envoy in the foreground; the status to exit with."""
    return asyncio.run(Agent(params, identity, workdir, log_level, concurrency).run())


def _forward(process: asyncio.subprocess.Process, sig: int) -> None:
    if process.returncode is None:
        process.send_signal(sig)


def _envoy_environment() -> dict[str, str]:
    """The agent's environment minus sidemesh's own settings: Envoy needs none of
    them, and one may carry a secret."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SIDEMESH_")}


__all__ = ["Agent", "IdentityParams", "envoy_command", "run_sidecar", "write_bootstrap"]
