"""The composition root: builds the sources and their aggregator, translator, cache,
ADS server and HTTP API, and runs them in one event loop. Everything is created here,
nothing at import time."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import grpc
import uvicorn
from envoy.service.discovery.v3 import ads_pb2_grpc

from sidemesh.api import ApiView, create_app
from sidemesh.api.certificates import create_signing_app
from sidemesh.api.endpoints import connected_proxies
from sidemesh.identity import CertificateAuthority, SpiffeId
from sidemesh.identity.ca import make_private_dir, serving_certificate, write_private
from sidemesh.identity.service import SigningService
from sidemesh.identity.spiffe import control_plane_identity
from sidemesh.identity.tokens import BootstrapTokens, TokenValidator
from sidemesh.kube.cluster import Cluster, ClusterSettings
from sidemesh.local.ports import StickyPorts
from sidemesh.local.runfiles import RunFiles, read_json, write_json
from sidemesh.model import MeshState, PortPicker
from sidemesh.model.addresses import is_loopback
from sidemesh.model.refs import WorkloadRef
from sidemesh.model.registry import Layout
from sidemesh.settings import ControlPlaneSettings
from sidemesh.sources import Aggregator, FileSource, Source
from sidemesh.sources.etcd import EtcdSource, etcd_client
from sidemesh.sources.etcd.relay import RegistrationRelay
from sidemesh.sources.kube.source import SOURCE_NAME as KUBE_SOURCE
from sidemesh.telemetry import ProxyAdmin, Scraper, TraceStore, trace_service
from sidemesh.xds import AdsServer, Publisher, SnapshotCache, StatusBoard
from sidemesh.xds.debounce import Debouncer
from sidemesh.xds.publisher import ResourceHook
from sidemesh.xds.server import GRPC_SERVER_OPTIONS

log = logging.getLogger(__name__)

SERVING_CERT_LIFETIME = dt.timedelta(days=365)
"""The CA endpoint's own certificate: made at each start, capped by the intermediate's
life, which a start renews when it is close to expiry."""


class ControlPlane:
    def __init__(
        self,
        settings: ControlPlaneSettings,
        hook: ResourceHook | None = None,
        ports: PortPicker | None = None,
        local_status: Callable[[], dict[str, Any]] | None = None,
        fallback: Callable[[], MeshState | None] | None = None,
    ) -> None:
        """``ports``, ``local_status`` and ``fallback`` are given by local mode
        (``local_control_plane``): the first picks ports mesh.yaml leaves out, the
        second reports the processes, the third is the state the mesh last ran."""
        self.settings = settings
        self.local_status = local_status
        self.state_listeners: list[Callable[[MeshState], None]] = []
        """Called with each accepted MeshState, after it is published to proxies."""
        self.cache = SnapshotCache()
        self.status = StatusBoard()
        self.publisher = Publisher(
            self.cache,
            hook=hook,
            on_demand=settings.on_demand,
        )
        self.tokens = BootstrapTokens(settings.state_dir / "tokens")
        self.aggregator = Aggregator([self._on_state])
        self.debouncer = Debouncer(self.publisher.update_state)
        """Bursts of states (a rollout, a host's registrations) make few pushes."""
        self.source: FileSource | None = None
        """mesh.yaml's source, when the control plane is given one."""
        self.etcd: EtcdSource | None = None
        """etcd's, when the mesh lives there (``--etcd``)."""
        self.sources: list[Source] = []
        """In merge order: the first is the primary (see ``Aggregator``)."""
        if settings.config is not None:
            self.source = FileSource(
                settings.config,
                self.aggregator.feed(str(settings.config)),
                ports,
                fallback,
                settings.own_ports(),
                settings.poll_interval_s,
            )
            self.sources.append(self.source)
        if settings.etcd is not None:
            self.etcd = EtcdSource(
                etcd_client(settings.etcd),
                self.aggregator.feed(f"etcd {settings.etcd}"),
                Layout(settings.etcd_prefix),
                where=settings.etcd,
            )
            self.sources.append(self.etcd)
        self.ca: CertificateAuthority | None = None
        self.relay = (
            RegistrationRelay(settings.etcd, Layout(settings.etcd_prefix))
            if settings.etcd is not None
            else None
        )
        """Where REST registrations (hosts that may not reach etcd) are written."""
        self.signing: SigningService | None = None
        self.ads = AdsServer(
            self.cache,
            self.status,
            on_connect=self.publisher.proxy_connected,
            on_disconnect=self.publisher.proxy_disconnected,
            authorize=self._authorize_proxy,
            on_demand=self.publisher.hosts_asked,
        )
        self.xds_port = 0
        self.api_port = 0
        self._grpc: grpc.aio.Server | None = None
        self._api: uvicorn.Server | None = None
        self._ca_server: uvicorn.Server | None = None
        self._ca_task: asyncio.Task[None] | None = None
        self.ca_port = 0
        self._api_task: asyncio.Task[None] | None = None
        self._watch_tasks: list[asyncio.Task[None]] = []
        self._serving: tuple[bytes, bytes] | None = None
        self.cluster: Cluster | None = None
        """The Kubernetes cluster watched, when ``settings.kubernetes``."""
        self.telemetry: Scraper | None = None
        self.traces = TraceStore()
        """Recent traces, from the spans proxies export (when no collector is set)."""

    def _on_state(self, state: MeshState) -> None:
        # Every workload has a token ready before anyone starts it.
        for name, namespace in [*state.workloads, *state.gateways]:
            self.tokens.ensure(WorkloadRef(name, namespace))
        if self.publisher.state.version == 0:
            self.publisher.update_state(state)  # the first: proxies wait for nothing
        else:
            self.debouncer.offer(state)
        for listener in self.state_listeners:
            listener(state)

    @property
    def _latest(self) -> MeshState:
        """The latest accepted state, pushed or not yet: who is in the mesh now."""
        return self.aggregator.state or self.publisher.state

    def _serving_certificate(self) -> tuple[bytes, bytes]:
        """The control plane's own certificate (chain, key), for its CA and xDS
        endpoints: its SPIFFE ID and every name sidecars reach it by. Made once per start."""
        if self._serving is None:
            assert self.ca is not None
            s = self.settings
            hosts = [s.api_host, s.ca_host or s.api_host, s.xds_host, "localhost", "127.0.0.1"]
            if self.cluster is not None:
                hosts += self.cluster.webhook_hosts()
            named = tuple(dict.fromkeys(h for h in hosts if h not in ("0.0.0.0", "::")))
            identity = control_plane_identity(self.ca.trust_domain)
            self._serving = serving_certificate(self.ca, identity, named, SERVING_CERT_LIFETIME)
        return self._serving

    def _authorize_proxy(self, node_id: str, peer: str | None) -> str | None:
        """A sidecar may ask only for the config of the workload its certificate is
        for. ``peer`` None: a plaintext stream, which is served on loopback only."""
        if peer is None:
            return None
        parts = node_id.split("~")
        if len(parts) != 3:
            return f"node id {node_id!r} is not <kind>~<workload>~<namespace> (certificate {peer})"
        expected = self._latest.identity_of(parts[1], parts[2])
        if expected is None:
            return f"{node_id} is not in the mesh (certificate {peer})"
        if expected != peer:
            return f"{node_id} is {expected}, but its certificate is {peer}"
        return None

    def _service_account_of(self, ref: WorkloadRef) -> str | None:
        workload = self._latest.workload(ref.name, ref.namespace)
        return workload.service_account if workload is not None else None

    def _identity_of(self, ref: WorkloadRef) -> SpiffeId | None:
        identity = self._latest.identity_of(ref.name, ref.namespace)
        return SpiffeId.parse(identity) if identity is not None else None

    async def start(self) -> None:
        """Load every source (raises ``ConfigError`` if one is bad), then serve ADS, the
        CA and the API."""
        s = self.settings
        if s.kubernetes:
            self.cluster = await Cluster.connect(
                ClusterSettings(
                    context=s.kube_context,
                    kubeconfig=s.kubeconfig,
                    namespace=s.kube_namespace,
                    webhook_host=s.webhook_host,
                    webhook_port=s.webhook_port,
                )
            )
            self.sources.append(self.cluster.source(self.aggregator.feed(KUBE_SOURCE)))
        for source in self.sources:
            await source.load_initial()
        state = self.aggregator.state
        assert state is not None, "every source has reported a first snapshot"
        self.ca = CertificateAuthority.load_or_create(s.state_dir / "ca", state.mesh.trust_domain)
        validator: TokenValidator = self.tokens
        if self.cluster is not None:
            validator = self.cluster.validator(self.tokens, self._service_account_of)
        self.signing = SigningService(
            self.ca, validator, self._identity_of, dt.timedelta(seconds=s.cert_lifetime_s)
        )
        await self._start_ca()
        if self.cluster is not None:
            await self.cluster.serve_webhook(self.ca, s.state_dir / "serving")
            await self.cluster.publish_root(self.ca.trust_bundle_pem)
        self._grpc = grpc.aio.server(options=GRPC_SERVER_OPTIONS)
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self.ads, self._grpc)
        # Spans come where xDS comes from: no other port for proxies to reach.
        self._grpc.add_generic_rpc_handlers((trace_service(self.traces),))
        chain, key = self._serving_certificate()
        if is_loopback(s.xds_host):
            self.xds_port = self._grpc.add_insecure_port(f"{s.xds_host}:{s.xds_port}")
        else:
            # Off this host, a sidecar proves who it is with its SVID: it may only ask
            # for its own config and secrets (see ``_authorize_proxy``).
            credentials = grpc.ssl_server_credentials(
                [(key, chain)],
                root_certificates=self.ca.trust_bundle_pem,
                require_client_auth=True,
            )
            self.xds_port = self._grpc.add_secure_port(f"{s.xds_host}:{s.xds_port}", credentials)
        if self.xds_port == 0:
            raise OSError(f"cannot listen for xDS on {s.xds_host}:{s.xds_port}")
        await self._grpc.start()

        api_socket = _bound_socket(s.api_host, s.api_port)
        self.api_port = api_socket.getsockname()[1]
        if s.telemetry_interval_s > 0:
            self.telemetry = Scraper(
                lambda: connected_proxies(self.publisher.state, self.status),
                self._service_of,
                s.telemetry_interval_s,
            )
            self._watch_tasks.append(asyncio.create_task(self.telemetry.run()))
        app = create_app(
            ApiView(
                self.publisher,
                self.status,
                self.source,
                self.signing,
                self.local_status,
                telemetry=self.telemetry,
                traces=self.traces,
            )
        )
        self._api = uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="off",
                # An open dashboard holds an event stream: a stop waits no longer.
                timeout_graceful_shutdown=2,
            )
        )
        self._api_task = asyncio.create_task(self._api.serve(sockets=[api_socket]))
        self._watch_tasks += [asyncio.create_task(source.watch()) for source in self.sources]
        log.info(
            "control plane serving mesh version %d from %s: xDS on %s:%d, "
            "API on http://%s:%d, CA on https://%s:%d (root %s)",
            state.version,
            ", ".join(f.name for f in self.aggregator.feeds),
            s.xds_host,
            self.xds_port,
            s.api_host,
            self.api_port,
            s.ca_host or s.api_host,
            self.ca_port,
            s.state_dir / "ca" / "root-cert.pem",
        )

    async def _start_ca(self) -> None:
        """The signing endpoint, over TLS with a certificate from the mesh's own CA."""
        assert self.ca is not None and self.signing is not None
        s = self.settings
        serving_dir = s.state_dir / "serving"
        make_private_dir(serving_dir)
        chain, key = self._serving_certificate()
        (serving_dir / "cert.pem").write_bytes(chain)
        write_private(serving_dir / "key.pem", key)
        ca_socket = _bound_socket(s.ca_host or s.api_host, s.ca_port)
        self.ca_port = ca_socket.getsockname()[1]
        self._ca_server = uvicorn.Server(
            uvicorn.Config(
                create_signing_app(self.signing, self.relay),
                log_level="warning",
                access_log=False,
                lifespan="off",
                ssl_certfile=str(serving_dir / "cert.pem"),
                ssl_keyfile=str(serving_dir / "key.pem"),
            )
        )
        self._ca_task = asyncio.create_task(self._ca_server.serve(sockets=[ca_socket]))

    def _service_of(self, proxy: ProxyAdmin) -> str:
        """The service a calling proxy's workload serves (a gateway: its name)."""
        state = self.publisher.state
        workload = state.workload(proxy.ref.name, proxy.ref.namespace)
        if workload is None:
            return str(proxy.ref)
        return f"{workload.service}.{workload.namespace or ''}"

    async def stop(self) -> None:
        if self._ca_server is not None and self._ca_task is not None:
            self._ca_server.should_exit = True
            await self._ca_task
        for task in self._watch_tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        if self._api is not None and self._api_task is not None:
            self._api.should_exit = True
            await self._api_task
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
        if self.cluster is not None:
            await self.cluster.close()
        if self.relay is not None:
            await self.relay.close()

    async def run(self) -> None:
        """Start, then serve until cancelled."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()


def local_control_plane(settings: ControlPlaneSettings, run: RunFiles) -> ControlPlane:
    """The control plane of a ``sidemesh up``, which runs it as a supervised child and
    talks to it through the run files: it keeps the ports it picks in ``ports.json`` (a
    restart must not move running workloads), writes each accepted state to
    ``plan.json`` for ``up`` to run, falls back to that plan if mesh.yaml is bad when it
    restarts, and reports the processes ``up`` writes to ``workloads.json``."""

    def last_plan() -> MeshState | None:
        data = read_json(run.plan_file)
        return MeshState.from_plan(data) if data is not None else None

    def local_status() -> dict[str, Any]:
        return read_json(run.status_file) or {"workloads": [], "controlPlane": None}

    control_plane = ControlPlane(
        settings, ports=StickyPorts(run.ports_file), local_status=local_status, fallback=last_plan
    )
    control_plane.state_listeners.append(lambda state: write_json(run.plan_file, state.to_plan()))
    return control_plane


def _bound_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Listening at once: a client that comes before the server task has started (the
    # moment start() returns) waits in the backlog instead of being refused.
    sock.listen(socket.SOMAXCONN)
    return sock
