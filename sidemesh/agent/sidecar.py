"""Run one sidecar: write its bootstrap, start Envoy, forward signals, exit as Envoy did."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import math
import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from sidemesh.agent.certificates import (
    CertificateRequestFailed,
    WorkloadCertificate,
    request_from_any,
)
from sidemesh.agent.envoy_binary import find_envoy
from sidemesh.agent.parent_death import die_with_parent
from sidemesh.agent.registration import Registration
from sidemesh.agent.sds import SdsServer
from sidemesh.envoy.bootstrap import BootstrapParams, bootstrap, to_json
from sidemesh.identity.spiffe import SpiffeId, control_plane_identity
from sidemesh.model.addresses import is_loopback
from sidemesh.model.refs import WorkloadRef

log = logging.getLogger(__name__)

SDS_SOCKET = "sds.sock"
ADMIN_SOCKET = "admin.sock"
"""The names of the sidecar's two Unix sockets in its private socket directory."""
FORWARDED_SIGNALS = (signal.SIGHUP,)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
DRAIN_S = 2.0
TOKEN_WAIT_S = 60.0
"""How long a registered workload waits for the control plane to make its token."""
"""A graceful stop: Envoy's listeners drain this long (callers are told to close
their connections, requests in flight finish, the control plane has pushed this
workload's removal to its callers meanwhile), then Envoy stops."""


def write_bootstrap(params: BootstrapParams, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    workload = WorkloadRef(params.proxy.workload, params.proxy.namespace)
    path = directory / f"{workload}.bootstrap.json"
    path.write_text(json.dumps(to_json(bootstrap(params)), indent=2))
    return path


def envoy_command(
    bootstrap_path: Path,
    log_level: str = "info",
    concurrency: int | None = None,
    drain_s: float = DRAIN_S,
) -> list[str]:
    """``concurrency``: Envoy's worker threads (Envoy's default: one per core).
    ``drain_s``: how long a graceful stop lets open connections finish."""
    command = [
        str(find_envoy()),
        "-c",
        str(bootstrap_path),
        "-l",
        log_level,
        # Many sidecars share one host in local mode; hot restart's shared memory
        # would make the second one fail to start.
        "--disable-hot-restart",
        # A drain asks every connection to close at once (HTTP/1.1 "Connection:
        # close" on its next response, HTTP/2 GOAWAY), not gradually over the period.
        "--drain-strategy",
        "immediate",
        "--drain-time-s",
        str(max(1, math.ceil(drain_s))),
    ]
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    # The kernel sends Envoy SIGTERM if the agent dies, even by SIGKILL, so no Envoy is
    # left running without its agent.
    return die_with_parent(command, "TERM")


@dataclass(frozen=True)
class IdentityParams:
    """How the agent gets its certificate."""

    ca_url: str
    """The control plane's signing endpoint, https://HOST:PORT; several, comma-separated,
    for replicas (the first that answers signs)."""
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
        drain_s: float = DRAIN_S,
        registration: Registration | None = None,
        handle_signals: bool = True,
    ) -> None:
        """``registration``: the workload registers itself in etcd (a host outside
        mesh.yaml), before it asks for its certificate, and leaves on a clean stop.
        ``handle_signals`` False: a host agent running many takes the signals and calls
        ``stop`` on each."""
        self.registration = registration
        self.handle_signals = handle_signals
        self._envoy: asyncio.subprocess.Process | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self.stop_requested = False
        self.drain_s = drain_s
        self.params = params
        self.identity = identity
        self.workdir = workdir
        self.log_level = log_level
        self.concurrency = concurrency
        self.sds = SdsServer()
        self.certificate: WorkloadCertificate | None = None
        self.rotations = 0

    async def run(self) -> int:
        registering = None
        if self.registration is not None:
            registering = asyncio.create_task(self.registration.run())
        try:
            return await self._run()
        finally:
            if registering is not None and self.registration is not None:
                registering.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await registering
                if self.stop_requested:
                    await self.registration.stop()
                # Else its Envoy died: the entry stays until its lease runs out, or
                # until the agent, started again, registers it under a new one.

    async def _token(self) -> str:
        """The bootstrap token; a registered workload waits for the control plane to
        see its registration and make its token."""
        path = self.identity.token_file
        if self.registration is not None:
            for _ in range(int(TOKEN_WAIT_S / 0.2)):
                if path.is_file():
                    break
                await asyncio.sleep(0.2)
        return path.read_text().strip()

    async def _run(self) -> int:
        token = await self._token()
        self.certificate = await self._obtain(token, deadline=None)
        self.sds.update(self.certificate)
        await self.sds.start(self.params.sds_socket)
        if not is_loopback(self.params.control_plane_host):
            # Off this host, xDS is mTLS: Envoy presents this certificate (from SDS) and
            # accepts only the control plane of the same trust domain.
            trust_domain = SpiffeId.parse(self.certificate.identity).trust_domain
            self.params = dataclasses.replace(
                self.params, xds_tls_identity=control_plane_identity(trust_domain).uri
            )
        path = write_bootstrap(self.params, self.workdir)
        envoy = await asyncio.create_subprocess_exec(
            *envoy_command(path, self.log_level, self.concurrency, self.drain_s),
            env=_envoy_environment(),
        )
        log.info(
            "Envoy started for %s (pid %d): admin on unix:%s, control plane %s:%d",
            self.params.proxy,
            envoy.pid,
            self.params.admin_socket,
            self.params.control_plane_host,
            self.params.control_plane_port,
        )
        self._envoy = envoy
        loop = asyncio.get_running_loop()
        signals = (*FORWARDED_SIGNALS, *STOP_SIGNALS) if self.handle_signals else ()
        if self.handle_signals:
            for sig in FORWARDED_SIGNALS:
                loop.add_signal_handler(sig, _forward, envoy, sig)
            for sig in STOP_SIGNALS:
                loop.add_signal_handler(sig, self.stop)
        if self.stop_requested:  # asked to stop while it was starting
            self.stop()
        renewer = asyncio.create_task(self._renew_forever(token))
        try:
            code = await envoy.wait()
        finally:
            try:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
            finally:
                for sig in signals:
                    loop.remove_signal_handler(sig)
                await self.sds.stop()
        log.info("Envoy for %s exited with status %d", self.params.proxy, code)
        return 128 - code if code < 0 else code

    @property
    def started(self) -> bool:
        """Its Envoy runs (or ran): a stop now drains it."""
        return self._envoy is not None

    def stop(self) -> None:
        """A clean stop: drain, then stop Envoy (``run`` returns). A second call stops
        Envoy at once."""
        self.stop_requested = True
        envoy = self._envoy
        if envoy is None:
            return  # not started yet: it stops as soon as it has
        if self._stopping:
            _forward(envoy, signal.SIGTERM)
            return
        self._stopping.add(asyncio.create_task(self._drain_then_stop(envoy)))

    async def _drain_then_stop(self, envoy: asyncio.subprocess.Process) -> None:
        """Graceful stop: leave the registry (callers stop choosing this workload as
        soon as the control plane sees it), drain Envoy's listeners for ``drain_s`` (the
        calls in flight finish), then SIGTERM it."""
        if self.registration is not None:
            await self.registration.stop()
        if self.drain_s > 0:
            try:
                transport = httpx.AsyncHTTPTransport(uds=self.params.admin_socket)
                async with httpx.AsyncClient(transport=transport, timeout=1.0) as client:
                    await client.post("http://envoy/drain_listeners?graceful")
                log.info("draining %s for %.1fs", self.params.proxy, self.drain_s)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(envoy.wait(), self.drain_s)
            except httpx.HTTPError as exc:  # Envoy is not answering: nothing to drain
                log.warning("could not drain %s (%s); stopping it", self.params.proxy, exc)
        _forward(envoy, signal.SIGTERM)

    async def _obtain(self, token: str, deadline: dt.datetime | None) -> WorkloadCertificate:
        """Ask until the CA answers; give up on a refusal, or at ``deadline``. A workload
        that registers itself is refused until the control plane has seen its
        registration: it asks again for a while."""
        delay = 0.2
        patient_until = _now() + dt.timedelta(seconds=TOKEN_WAIT_S)
        while True:
            try:
                return await request_from_any(self.identity.ca_url, token, self.identity.ca_bundle)
            except CertificateRequestFailed as exc:
                now = _now()
                waiting = self.registration is not None and now < patient_until
                refused = not exc.retryable and not waiting
                if refused or (deadline is not None and now >= deadline):
                    raise
                log.warning("%s; trying again in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                # Capped low: a sidecar that starts during a CA outage should have its
                # certificate within a couple of seconds of the CA's return.
                delay = min(delay * 2, 2.0)

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
        """Ask until the CA gives a new certificate; how long to wait between attempts is
        ``renewal_retry_delay``'s to say. A refusal is retried too (the workload may come
        back into the mesh)."""
        backoff = RENEW_RETRY_FIRST_S
        failures = 0
        first_failure = last_logged = _now()
        logged_urgent = logged_expired = False
        while True:
            try:
                renewed = await request_from_any(
                    self.identity.ca_url, token, self.identity.ca_bundle
                )
            except CertificateRequestFailed as exc:
                problem, retryable = str(exc), exc.retryable
            except Exception as exc:  # a bug must not silently stop renewal
                log.exception("unexpected error renewing the certificate of %s", self.params.proxy)
                problem, retryable = repr(exc), True
            else:
                if failures:
                    log.warning(
                        "renewed the certificate of %s after %d failed attempts over %.0fs",
                        self.params.proxy,
                        failures,
                        (_now() - first_failure).total_seconds(),
                    )
                return renewed
            failures += 1
            now = _now()
            if failures == 1:
                first_failure = now
            lifetime = current.lifetime.total_seconds()
            left = (current.not_after - now).total_seconds()
            urgent = _in_last_stretch(left, lifetime)
            delay = renewal_retry_delay(backoff, left, lifetime, retryable, random.random())
            # Once retrying every second, one line a second for a long outage would bury
            # everything else: log the first failure, the moments it gets worse, then a
            # reminder every RENEW_LOG_EVERY_S, each with the count so far.
            if (
                failures == 1
                or (urgent and not logged_urgent)
                or (left <= 0 and not logged_expired)
                or (now - last_logged).total_seconds() >= RENEW_LOG_EVERY_S
            ):
                last_logged = now
                logged_urgent = logged_urgent or urgent
                logged_expired = logged_expired or left <= 0
                log.error(
                    "could not renew the certificate of %s (%s); attempt %d failed, "
                    "next in %.1fs: %s",
                    self.params.proxy,
                    _expiry_state(left, urgent),
                    failures,
                    delay,
                    problem,
                    extra={"renewal_failures": failures, "certificate_expires_in_s": round(left)},
                )
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, RENEW_REFUSED_RETRY_S)


def renewal_retry_delay(
    backoff_s: float, left_s: float, lifetime_s: float, retryable: bool, jitter: float
) -> float:
    """Seconds to wait before asking the CA again after a failed renewal.

    ``backoff_s`` is the exponential backoff so far, ``left_s`` the seconds until the
    current certificate expires (negative once it has), ``lifetime_s`` its whole usable
    lifetime, ``retryable`` false for a refusal (4xx), and ``jitter`` a uniform random
    number in [0, 1): the caller draws it, so this stays a pure function.
    """
    if _in_last_stretch(left_s, lifetime_s):
        # Expired or about to: every new mTLS connection to or from this workload fails
        # (or soon will), so waiting protects nothing and each second lost is a second of
        # outage after the CA is back. Ask every second whatever the backoff had reached.
        if retryable:
            return RENEW_URGENT_RETRY_S * _spread(jitter)
        # A refusal is retried almost as fast: at this point it is most likely passing
        # (a control plane that has not yet seen the workload again after a restart, a
        # token being replaced) and costs the CA only a token check. Somewhat slower all
        # the same, since a refusal is likelier to last (a workload removed from the
        # mesh, whose agent is stopped along with it) and each is a line in the CA's log.
        low = RENEW_URGENT_REFUSED_MIN_S
        return low + (RENEW_URGENT_MAX_S - low) * jitter
    cap = RENEW_RETRY_MAX_S if retryable else RENEW_REFUSED_RETRY_S
    # Several more attempts before it expires, however long the backoff has grown.
    cap = min(cap, max(left_s / 4, RENEW_RETRY_FIRST_S))
    return min(backoff_s, cap) * _spread(jitter)


def _spread(jitter: float) -> float:
    """A factor in [1 - RENEW_JITTER, 1 + RENEW_JITTER) for ``jitter`` in [0, 1)."""
    return 1 - RENEW_JITTER + 2 * RENEW_JITTER * jitter


def _in_last_stretch(left_s: float, lifetime_s: float) -> bool:
    """Expired, or in the last RENEW_URGENT_FRACTION of its lifetime."""
    return left_s <= lifetime_s * RENEW_URGENT_FRACTION


def _expiry_state(left_s: float, urgent: bool) -> str:
    """What an operator needs to know about the certificate that could not be renewed."""
    if left_s <= 0:
        ago = f"{-left_s:.0f}s ago" if left_s <= -1 else "just now"
        return (
            f"EXPIRED {ago}: new mTLS connections to and from it fail until the CA "
            "answers, open ones keep serving"
        )
    if urgent:
        return f"expires in {left_s:.0f}s: retrying every 1-2s from now on"
    return f"expires in {left_s:.0f}s"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


RENEW_RETRY_FIRST_S = 1.0
RENEW_RETRY_MAX_S = 60.0
RENEW_REFUSED_RETRY_S = 300.0
RENEW_JITTER = 0.2
"""Each delay is spread +-20%, so workloads that failed together don't retry together."""
RENEW_URGENT_FRACTION = 0.1
"""In the last 10% of its lifetime (or past it) a certificate is renewed every second."""
RENEW_URGENT_RETRY_S = 1.0
RENEW_URGENT_REFUSED_MIN_S = 1.5
RENEW_URGENT_MAX_S = 2.0
"""The longest wait between attempts once a certificate is expired or about to be."""
RENEW_LOG_EVERY_S = 30.0


def run_sidecar(
    params: BootstrapParams,
    identity: IdentityParams,
    workdir: Path,
    log_level: str = "info",
    concurrency: int | None = None,
    drain_s: float = DRAIN_S,
    registration: Callable[[], Registration] | None = None,
) -> int:
    """Run the agent and its Envoy in the foreground; the status to exit with.
    ``registration`` makes the workload's registration (in the agent's event loop)."""

    async def main() -> int:
        registered = registration() if registration is not None else None
        agent = Agent(params, identity, workdir, log_level, concurrency, drain_s, registered)
        return await agent.run()

    return asyncio.run(main())


def _forward(process: asyncio.subprocess.Process, sig: int) -> None:
    if process.returncode is None:
        process.send_signal(sig)


def _envoy_environment() -> dict[str, str]:
    """The agent's environment minus sidemesh's own settings: Envoy needs none of
    them, and one may carry a secret."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SIDEMESH_")}


__all__ = [
    "Agent",
    "IdentityParams",
    "envoy_command",
    "renewal_retry_delay",
    "run_sidecar",
    "write_bootstrap",
]
