"""``sidemesh``: run the control plane or a sidecar."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat as file_mode
import tempfile
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sidemesh.agent.certificates import CertificateRequestFailed
from sidemesh.agent.registration import EtcdRegistration, Registration, RestRegistration
from sidemesh.agent.sidecar import ADMIN_SOCKET, DRAIN_S, SDS_SOCKET, IdentityParams, run_sidecar
from sidemesh.cli import access_log
from sidemesh.cli import apply as apply_commands
from sidemesh.cli import check as check_view
from sidemesh.cli import explain as explain_view
from sidemesh.cli import join as join_commands
from sidemesh.cli import kube as kube_commands
from sidemesh.cli import proxy_config as proxy_config_view
from sidemesh.cli import status as status_view
from sidemesh.cli import token as token_commands
from sidemesh.cli import traces as traces_view
from sidemesh.cli import traffic as traffic_view
from sidemesh.cli.api_client import DEFAULT_API, ApiUnreachable, get_json, select_cluster
from sidemesh.cli.format import duration
from sidemesh.cli.logs import LogFormat, setup_logging
from sidemesh.cli.tail import follow_log
from sidemesh.cli.up import UpOptions, run_foreground, start_detached
from sidemesh.cli.up import down as stop_mesh
from sidemesh.controlplane import ControlPlane, local_control_plane
from sidemesh.envoy import ProxyId
from sidemesh.envoy.bootstrap import BootstrapParams, XdsMode
from sidemesh.envoy.explain import Request
from sidemesh.errors import ConfigError, EnvoyNotFound, TranslationError
from sidemesh.local.runfiles import RunFiles
from sidemesh.model.registry import DEFAULT_LEASE_TTL_S, DEFAULT_PREFIX, Layout, grpc_target
from sidemesh.settings import (
    DEFAULT_CA_PORT,
    DEFAULT_RUNTIME_DIR,
    DEFAULT_STATE_DIR,
    ControlPlaneSettings,
)
from sidemesh.sources.kube.client import KubeApiError

EXIT_BAD_INPUT = 2

app = typer.Typer(
    help="sidemesh: a service mesh with a Python control plane and Envoy sidecars.",
    no_args_is_help=True,
    add_completion=False,
)

LogFormatOption = Annotated[
    LogFormat, typer.Option("--log-format", envvar="SIDEMESH_LOG_FORMAT", help="text or json")
]
LogLevelOption = Annotated[
    str,
    typer.Option("--log-level", envvar="SIDEMESH_LOG_LEVEL", help="debug, info, warning, error"),
]

ApiOption = Annotated[str, typer.Option(envvar="SIDEMESH_API", help="The control plane's HTTP API")]
ContextOption = Annotated[
    str | None,
    typer.Option(
        "--context",
        help="Read a cluster's control plane (this kubeconfig context) through its API server",
        callback=lambda value: select_cluster(context=value),
    ),
]
KubeconfigOption = Annotated[
    Path | None,
    typer.Option(
        "--kubeconfig",
        help="With --context: the kubeconfig file (kubectl's default if unset)",
        callback=lambda value: select_cluster(kubeconfig=value),
    ),
]


@app.command()
def controlplane(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-f",
            envvar="SIDEMESH_CONFIG",
            help="The mesh.yaml to serve (optional with --etcd or --kubernetes)",
        ),
    ] = None,
    etcd: Annotated[
        str | None,
        typer.Option(
            envvar="SIDEMESH_ETCD",
            help="Serve the mesh held in this etcd cluster (http://HOST:PORT,...): what "
            "`sidemesh apply` wrote and the workloads agents registered",
        ),
    ] = None,
    etcd_prefix: Annotated[
        str, typer.Option(envvar="SIDEMESH_ETCD_PREFIX", help="The mesh's etcd key prefix")
    ] = DEFAULT_PREFIX,
    xds_host: Annotated[
        str, typer.Option(envvar="SIDEMESH_XDS_HOST", help="Address for ADS (gRPC)")
    ] = "127.0.0.1",
    xds_port: Annotated[
        int, typer.Option(envvar="SIDEMESH_XDS_PORT", help="ADS port (0: any free port)")
    ] = 15010,
    api_host: Annotated[
        str, typer.Option(envvar="SIDEMESH_API_HOST", help="Address for the HTTP API")
    ] = "127.0.0.1",
    api_port: Annotated[
        int, typer.Option(envvar="SIDEMESH_API_PORT", help="HTTP API port (0: any free port)")
    ] = 15014,
    ca_port: Annotated[
        int, typer.Option(envvar="SIDEMESH_CA_PORT", help="Certificate signing port, HTTPS")
    ] = DEFAULT_CA_PORT,
    ca_host: Annotated[
        str | None,
        typer.Option(
            envvar="SIDEMESH_CA_HOST", help="Address for certificate signing (default: --api-host)"
        ),
    ] = None,
    state_dir: Annotated[
        Path,
        typer.Option(
            envvar="SIDEMESH_STATE_DIR",
            help="Where the CA and bootstrap tokens are kept (delete it for a new root CA)",
        ),
    ] = DEFAULT_STATE_DIR,
    cert_lifetime: Annotated[
        float,
        typer.Option(
            envvar="SIDEMESH_CERT_LIFETIME", help="Workload certificate lifetime, seconds"
        ),
    ] = 3600.0,
    telemetry_interval: Annotated[
        float,
        typer.Option(
            envvar="SIDEMESH_TELEMETRY_INTERVAL",
            min=0,
            help="Seconds between scrapes of every proxy's stats (golden signals); 0: off",
        ),
    ] = 5.0,
    on_demand: Annotated[
        bool,
        typer.Option(
            envvar="SIDEMESH_ON_DEMAND",
            help="Sidecars on delta xDS hold only the services they use, learning each at "
            "its first call (--no-on-demand: every proxy gets the whole mesh)",
        ),
    ] = True,
    kubernetes: Annotated[
        bool,
        typer.Option(
            envvar="SIDEMESH_KUBERNETES",
            help="Also watch a Kubernetes cluster: its Services, meshed Pods and policy "
            "objects join mesh.yaml's; pods prove themselves with service-account tokens; "
            "the injection webhook is served",
        ),
    ] = False,
    context: Annotated[
        str | None,
        typer.Option(envvar="SIDEMESH_KUBE_CONTEXT", help="kubeconfig context (kubectl's)"),
    ] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(envvar="KUBECONFIG", help="kubeconfig file (kubectl's default if unset)"),
    ] = None,
    kube_namespace: Annotated[
        str,
        typer.Option(envvar="SIDEMESH_NAMESPACE", help="The namespace the control plane runs in"),
    ] = "sidemesh-system",
    webhook_port: Annotated[
        int,
        typer.Option(envvar="SIDEMESH_WEBHOOK_PORT", help="Injection webhook port (HTTPS)"),
    ] = 15017,
    log_format: LogFormatOption = LogFormat.TEXT,
    log_level: LogLevelOption = "info",
    local_run_dir: Annotated[
        Path | None,
        typer.Option(hidden=True, help="Set by sidemesh up: its runtime directory"),
    ] = None,
) -> None:
    """Serve the mesh (mesh.yaml, etcd, a cluster) to sidecars over xDS; follow its changes."""
    setup_logging(log_format, log_level)
    if config is None and etcd is None and not kubernetes:
        typer.echo("give the mesh: --config mesh.yaml, --etcd URL or --kubernetes", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    if etcd is not None:
        try:
            grpc_target(etcd)
        except ValueError as exc:
            typer.echo(f"--etcd: {exc}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from exc
    settings = ControlPlaneSettings(
        config=config,
        etcd=etcd,
        etcd_prefix=etcd_prefix,
        xds_host=xds_host,
        xds_port=xds_port,
        api_host=api_host,
        api_port=api_port,
        ca_port=ca_port,
        ca_host=ca_host,
        state_dir=state_dir,
        cert_lifetime_s=cert_lifetime,
        telemetry_interval_s=telemetry_interval,
        on_demand=on_demand,
        kubernetes=kubernetes,
        kube_context=context,
        kubeconfig=kubeconfig,
        kube_namespace=kube_namespace,
        webhook_port=webhook_port,
    )
    plane = (
        ControlPlane(settings)
        if local_run_dir is None
        else local_control_plane(settings, RunFiles(local_run_dir))
    )
    try:
        asyncio.run(plane.run())
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    except (OSError, KubeApiError) as exc:
        typer.echo(f"sidemesh controlplane: {exc}", err=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass


@app.command()
def sidecar(
    workload: Annotated[
        str, typer.Option("--workload", "-w", help="The workload this sidecar serves")
    ],
    control_plane: Annotated[
        str,
        typer.Option(
            "--control-plane",
            envvar="SIDEMESH_CONTROL_PLANE",
            help="ADS address, HOST:PORT; several (comma-separated) for replicas",
        ),
    ] = "127.0.0.1:15010",
    namespace: Annotated[str, typer.Option(help="The workload's namespace")] = "default",
    service: Annotated[
        str | None, typer.Option(help="The workload's service (names Envoy's cluster)")
    ] = None,
    xds_mode: Annotated[XdsMode, typer.Option(help="delta or sotw")] = XdsMode.DELTA,
    token_file: Annotated[
        Path | None,
        typer.Option(
            envvar="SIDEMESH_TOKEN_FILE",
            help="The workload's bootstrap token "
            "(default: <state-dir>/tokens/<workload>.<namespace>.token)",
        ),
    ] = None,
    ca_address: Annotated[
        str | None,
        typer.Option(
            help="The control plane's CA, HOST:PORT, or several (default: each control "
            "plane's host, port 15012)"
        ),
    ] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(help="The mesh root certificate (default: <state-dir>/ca/root-cert.pem)"),
    ] = None,
    state_dir: Annotated[
        Path,
        typer.Option(envvar="SIDEMESH_STATE_DIR", help="The control plane's state directory"),
    ] = DEFAULT_STATE_DIR,
    workdir: Annotated[
        Path | None, typer.Option(help="Where to write the bootstrap (default: a temp dir)")
    ] = None,
    socket_dir: Annotated[
        Path | None,
        typer.Option(
            help="A private directory for the SDS socket and Envoy's admin socket "
            "(admin.sock, 0600), removed on exit (default: a new temp dir; keep its path short)"
        ),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Envoy worker threads (default: one per core)")
    ] = None,
    drain_seconds: Annotated[
        float,
        typer.Option(
            min=0,
            help="On SIGTERM, drain Envoy's listeners this long before stopping it "
            "(0: stop at once)",
        ),
    ] = DRAIN_S,
    register_etcd: Annotated[
        str | None,
        typer.Option(
            envvar="SIDEMESH_ETCD",
            help="Register the workload in this etcd cluster (http://HOST:PORT,...) under a "
            "lease, so it joins the mesh from any host; needs --service, --address, --port",
        ),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="With --register-etcd: the address callers reach")
    ] = None,
    endpoint_port: Annotated[
        int | None,
        typer.Option(
            "--port", help="With --register-etcd: where the sidecar takes the service's calls"
        ),
    ] = None,
    app_port: Annotated[
        int | None,
        typer.Option(help="With --register-etcd: where the app listens on 127.0.0.1"),
    ] = None,
    outbound_port: Annotated[
        int, typer.Option(help="With --register-etcd: the app's outbound port on its sidecar")
    ] = 15001,
    label: Annotated[
        list[str] | None,
        typer.Option(help="With --register-etcd: a label, KEY=VALUE (repeat)"),
    ] = None,
    service_account: Annotated[
        str | None, typer.Option(help="With --register-etcd: the identity (default: service)")
    ] = None,
    calls: Annotated[
        list[str] | None,
        typer.Option(
            "--calls",
            help="With --register-etcd: a service the app calls, held from the start "
            "(repeat; others are learned at their first call)",
        ),
    ] = None,
    register_rest: Annotated[
        bool,
        typer.Option(
            "--register-rest",
            help="Register the workload through the control plane (POST /v1/registrations "
            "on its CA address, with the workload's token), for a host that cannot reach "
            "etcd; takes the same flags as --register-etcd",
        ),
    ] = False,
    lease_ttl: Annotated[
        int,
        typer.Option(
            min=2, help="With --register-etcd: seconds until a dead host's workload leaves"
        ),
    ] = DEFAULT_LEASE_TTL_S,
    etcd_prefix: Annotated[str, typer.Option(help="The mesh's etcd key prefix")] = DEFAULT_PREFIX,
    log_format: LogFormatOption = LogFormat.TEXT,
    log_level: LogLevelOption = "info",
) -> None:
    """Run Envoy as WORKLOAD's sidecar, fed by the control plane."""
    setup_logging(log_format, log_level)
    registration: Callable[[], Registration] | None = None
    entry: dict[str, Any] = {}
    if register_etcd is not None and register_rest:
        typer.echo("--register-etcd and --register-rest: choose one", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    if register_rest or register_etcd is not None:
        entry = _registration_entry(
            workload,
            service,
            address,
            endpoint_port,
            app_port,
            outbound_port,
            label,
            service_account,
            calls,
        )
    if register_etcd is not None:
        try:
            grpc_target(register_etcd)
        except ValueError as exc:
            typer.echo(f"--register-etcd: {exc}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from exc

        def registration() -> Registration:
            assert register_etcd is not None
            return EtcdRegistration(
                register_etcd, namespace, entry, layout=Layout(etcd_prefix), ttl_s=lease_ttl
            )

    try:
        replicas = join_commands.control_planes(control_plane)
    except ValueError as exc:
        typer.echo(f"--control-plane: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    (host, xds_port), others = replicas[0], tuple(replicas[1:])
    # A short private directory: Unix socket paths are limited to about 100 bytes.
    if socket_dir is None:
        socket_dir = Path(tempfile.mkdtemp(prefix="sidemesh-"))
    elif socket_dir.exists():
        # Removed on exit, and it holds the socket that hands out the private key: only
        # a private directory holding nothing but a stale socket (a sidecar before this
        # one was killed) is reused; the operator's own directories are left alone.
        problem = _unusable_socket_dir(socket_dir)
        if problem:
            typer.echo(f"--socket-dir: {socket_dir} {problem}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
    else:
        socket_dir.mkdir(mode=0o700, parents=True)
    params = BootstrapParams(
        proxy=ProxyId(workload, namespace),
        service=service or workload,
        control_plane_host=host,
        control_plane_port=xds_port,
        other_control_planes=others,
        admin_socket=str(socket_dir / ADMIN_SOCKET),
        sds_socket=str(socket_dir / SDS_SOCKET),
        xds_mode=xds_mode,
    )
    identity = IdentityParams(
        ca_url=join_commands.ca_urls(ca_address, replicas),
        token_file=token_file or state_dir / "tokens" / f"{workload}.{namespace}.token",
        ca_bundle=ca_bundle or state_dir / "ca" / "root-cert.pem",
    )
    if register_rest:
        token_file = identity.token_file

        def registration() -> Registration:
            return RestRegistration(
                [u.strip() for u in identity.ca_url.split(",") if u.strip()],
                namespace,
                entry,
                token=lambda: token_file.read_text().strip(),
                ca_bundle=identity.ca_bundle,
                ttl_s=lease_ttl,
            )

    for flag, path in (("--token-file", identity.token_file), ("--ca-bundle", identity.ca_bundle)):
        if register_etcd is not None and flag == "--token-file":
            continue  # made by the control plane once it sees the registration
        if not path.is_file():
            typer.echo(f"{flag}: {path} does not exist (is the control plane running?)", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
    try:
        code = run_sidecar(
            params,
            identity,
            workdir or socket_dir,
            log_level,
            concurrency,
            drain_seconds,
            registration,
        )
    except EnvoyNotFound as exc:
        typer.echo(f"sidemesh sidecar: {exc}", err=True)
        raise typer.Exit(1) from exc
    except CertificateRequestFailed as exc:
        typer.echo(f"sidemesh sidecar: no certificate for {workload}: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
    raise typer.Exit(code)


def _registration_entry(
    workload: str,
    service: str | None,
    address: str | None,
    port: int | None,
    app_port: int | None,
    outbound_port: int,
    labels: list[str] | None,
    service_account: str | None,
    calls: list[str] | None = None,
) -> dict[str, Any]:
    """The workload as a mesh.yaml ``workloads:`` entry, from the sidecar's flags."""
    missing = [
        flag
        for flag, value in (("--service", service), ("--address", address), ("--port", port))
        if value is None
    ]
    if missing:
        typer.echo(
            f"registering (--register-etcd, --register-rest) needs {', '.join(missing)}", err=True
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    parsed: dict[str, str] = {}
    for item in labels or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            typer.echo(f"--label {item!r}: write it as KEY=VALUE", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        parsed[key] = value
    entry: dict[str, Any] = {
        "name": workload,
        "service": service,
        "address": address,
        "port": port,
        "appPort": app_port or port,
        "labels": parsed,
        "sidecar": {"outboundPort": outbound_port},
    }
    if service_account:
        entry["serviceAccount"] = service_account
    if calls:
        entry["calls"] = list(calls)
    return entry


def _unusable_socket_dir(path: Path) -> str | None:
    st = path.lstat()
    if not file_mode.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return "exists and is not a private (0700) directory of this user"
    # What a sidecar leaves there itself: its sockets and its bootstrap.
    extra = sorted(
        p.name
        for p in path.iterdir()
        if p.name not in (SDS_SOCKET, ADMIN_SOCKET) and not p.name.endswith(".bootstrap.json")
    )
    if extra:
        return f"exists and holds other files ({', '.join(extra[:3])}): give a new path"
    return None


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


@app.command()
def proxies(
    api: ApiOption = DEFAULT_API,
    context: ContextOption = None,
    kubeconfig: KubeconfigOption = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="table or json")] = Output.TABLE,
) -> None:
    """Connected sidecars: sync state, identity, certificate serial and expiry."""
    try:
        data = get_json(api, "/v1/proxies")
    except ApiUnreachable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    if output is Output.JSON:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"sidecars (mesh version {data['meshVersion']})")
    for column in ("proxy", "xDS", "synced", "NACKs", "identity", "serial", "expires in"):
        table.add_column(column)
    for proxy in data["proxies"]:
        cert = proxy.get("certificate") or {}
        nacks = sum(t["nacks"] for t in proxy["types"].values())
        synced = (
            "yes"
            if proxy["synced"] and proxy["connected"]
            else ("disconnected" if not proxy["connected"] else "no")
        )
        table.add_row(
            proxy["node"],
            proxy["xdsMode"],
            synced,
            str(nacks),
            cert.get("identity", "-"),
            cert.get("serial", "-")[:16],
            duration(cert.get("expiresInSeconds")),
        )
    Console().print(table)


RuntimeDirOption = Annotated[
    Path,
    typer.Option(
        envvar="SIDEMESH_RUNTIME_DIR",
        help="Where local mode keeps logs, its CA and run files",
    ),
]


@app.command()
def up(
    file: Annotated[Path, typer.Option("--file", "-f", help="The mesh.yaml to run")],
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Run in the background; `sidemesh down` stops it")
    ] = False,
    runtime_dir: RuntimeDirOption = DEFAULT_RUNTIME_DIR,
    xds_port: Annotated[int, typer.Option(help="ADS port of the control plane")] = 15010,
    api_port: Annotated[int, typer.Option(help="HTTP API port")] = 15014,
    ca_port: Annotated[int, typer.Option(help="Certificate signing port")] = DEFAULT_CA_PORT,
    xds_mode: Annotated[XdsMode, typer.Option(help="delta or sotw, for every sidecar")] = (
        XdsMode.DELTA
    ),
    cert_lifetime: Annotated[
        float,
        typer.Option(
            min=1.0,
            envvar="SIDEMESH_CERT_LIFETIME",
            help="Workload certificate lifetime, seconds (how long sidecars ride out a "
            "control plane outage for new connections)",
        ),
    ] = 3600.0,
    log_format: LogFormatOption = LogFormat.TEXT,
    log_level: LogLevelOption = "warning",
) -> None:
    """Run every workload of mesh.yaml on this machine, each with its sidecar, and the
    control plane: a whole mesh, no Kubernetes. Ctrl-C stops it all."""
    options = UpOptions(
        file,
        runtime_dir,
        xds_port,
        api_port,
        ca_port,
        xds_mode.value,
        cert_lifetime_s=cert_lifetime,
        log_format=log_format.value,
        log_level=log_level,
    )
    console = Console()
    if detach:
        argv = [
            "up", "-f", str(file), "--runtime-dir", str(runtime_dir),
            "--xds-port", str(xds_port), "--api-port", str(api_port),
            "--ca-port", str(ca_port), "--xds-mode", xds_mode.value,
            "--cert-lifetime", str(cert_lifetime),
            "--log-format", log_format.value, "--log-level", log_level,
        ]  # fmt: skip
        raise typer.Exit(start_detached(options, argv, console))
    setup_logging(log_format, log_level)
    raise typer.Exit(run_foreground(options, console))


@app.command()
def check(
    file: Annotated[Path, typer.Option("--file", "-f", help="The mesh.yaml to check")],
    output: Annotated[Output, typer.Option("--output", "-o", help="table or json")] = Output.TABLE,
) -> None:
    """Validate a mesh.yaml and the documents it holds or includes without running
    anything: the errors the control plane would refuse it for, its warnings, and
    advice on policies that load but likely do not do what was meant. Exit 1 on errors."""
    data = check_view.gather(file)
    if output is Output.JSON:
        typer.echo(json.dumps(data, indent=2))
    else:
        check_view.render(data, Console())
    raise typer.Exit(0 if data["valid"] else 1)


@app.command()
def explain(
    caller: Annotated[str, typer.Argument(help="The calling workload (as in mesh.yaml)")],
    host: Annotated[str, typer.Argument(help="The service as the app calls it (reviews)")],
    method: Annotated[str, typer.Argument(help="The request's method")] = "GET",
    path: Annotated[str, typer.Argument(help="The request's path, query included")] = "/",
    file: Annotated[
        Path, typer.Option("--file", "-f", envvar="SIDEMESH_CONFIG", help="The mesh.yaml")
    ] = Path("mesh.yaml"),
    header: Annotated[
        list[str] | None, typer.Option("--header", "-H", help="A request header, name=value")
    ] = None,
    jwt: Annotated[
        Path | None,
        typer.Option(help="A file holding the request's token (a JWT, or its claims as JSON)"),
    ] = None,
    namespace: Annotated[str, typer.Option(help="The calling workload's namespace")] = "default",
    output: Annotated[Output, typer.Option("--output", "-o", help="table or json")] = Output.TABLE,
) -> None:
    """Which route, backends, timeout and retries a request gets, and whether each
    backend allows it and by which policy and rule: from the Envoy config the mesh
    would send, so it agrees with what Envoy does."""
    headers: dict[str, str] = {}
    for item in header or ():
        name, sep, value = item.partition("=")
        if not sep:
            typer.echo(f"--header {item!r}: write it as name=value", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        headers[name.strip().lower()] = (
            f"{headers[name.strip().lower()]},{value}" if name.strip().lower() in headers else value
        )
    try:
        claims = explain_view.read_claims(jwt) if jwt is not None else None
        request = Request(caller, host, method.upper(), path, headers, claims, namespace)
        data = explain_view.gather(file, request)
    except (ConfigError, TranslationError, ValueError, OSError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    if output is Output.JSON:
        typer.echo(json.dumps(data, indent=2))
    else:
        explain_view.render(data, Console())


WindowOption = Annotated[str, typer.Option(help="10s, 1m or 10m")]
NamespaceFilter = Annotated[str | None, typer.Option(help="Only services of this namespace")]
ServiceFilter = Annotated[str | None, typer.Option(help="Only this service (its name)")]
EdgesOption = Annotated[
    bool, typer.Option("--edges", help="Each calling workload to each service, not services")
]


@app.command()
def stat(
    api: ApiOption = DEFAULT_API,
    context: ContextOption = None,
    kubeconfig: KubeconfigOption = None,
    window: WindowOption = "1m",
    namespace: NamespaceFilter = None,
    service: ServiceFilter = None,
    edges: EdgesOption = False,
    output: Annotated[Output, typer.Option("--output", "-o", help="table or json")] = Output.TABLE,
) -> None:
    """Golden signals now: requests/s, success rate and latency percentiles per service
    (or per edge), as the callers' sidecars counted them."""
    _show(
        lambda: traffic_view.gather(api, window, namespace, service),
        lambda data: traffic_view.table(data, edges),
        output,
    )


def _show(
    gather: Callable[[], dict[str, Any]],
    render: Callable[[dict[str, Any]], Table],
    output: Output,
    min_width: int = 0,
) -> None:
    """Read from the API, then print a table or JSON; exit 1 with the reason if the API
    cannot answer."""
    try:
        data = gather()
    except (ApiUnreachable, traces_view.TraceNotFound) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    if output is Output.JSON:
        typer.echo(json.dumps(data, indent=2))
    else:
        Console(width=max(Console().width, min_width)).print(render(data))


@app.command()
def top(
    api: ApiOption = DEFAULT_API,
    context: ContextOption = None,
    kubeconfig: KubeconfigOption = None,
    window: WindowOption = "10s",
    namespace: NamespaceFilter = None,
    service: ServiceFilter = None,
    edges: EdgesOption = False,
    refresh: Annotated[float, typer.Option(min=0.2, help="Seconds between refreshes")] = 2.0,
) -> None:
    """A live table of services (or edges) by requests/s, refreshed until Ctrl-C."""
    try:
        traffic_view.top(api, window, namespace, service, edges, refresh, Console())
    except ApiUnreachable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass


@app.command()
def traces(
    api: ApiOption = DEFAULT_API,
    context: ContextOption = None,
    kubeconfig: KubeconfigOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many to show")] = 20,
    service: Annotated[
        str | None, typer.Option(help="Only traces with a span of this service")
    ] = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only failed traces")] = False,
    output: Annotated[Output, typer.Option("--output", "-o", help="table or json")] = Output.TABLE,
) -> None:
    """Recent traces the sidecars sent the control plane: failed ones first, then the
    slowest. `sidemesh trace ID` shows one."""
    _show(
        lambda: traces_view.gather_list(api, limit, service, errors), traces_view.list_table, output
    )


@app.command()
def trace(
    trace_id: Annotated[str, typer.Argument(help="A trace ID, as `sidemesh traces` lists it")],
    api: ApiOption = DEFAULT_API,
    context: ContextOption = None,
    kubeconfig: KubeconfigOption = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="table or json")] = Output.TABLE,
) -> None:
    """One trace as a waterfall: every span under its parent, with when it ran."""
    # The waterfall's bars need the width even where the terminal is narrower.
    _show(lambda: traces_view.gather_one(api, trace_id), traces_view.waterfall, output, 140)


@app.command()
def down(runtime_dir: RuntimeDirOption = DEFAULT_RUNTIME_DIR) -> None:
    """Stop the mesh `sidemesh up` runs: apps, then sidecars, then the control plane."""
    raise typer.Exit(stop_mesh(runtime_dir, Console()))


@app.command()
def status(
    api: ApiOption = DEFAULT_API,
    context: ContextOption = None,
    kubeconfig: KubeconfigOption = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="table or json")] = Output.TABLE,
) -> None:
    """Services and workloads: processes, restarts, sidecar sync, health as the callers
    see it (outlier detection, health checks), certificate expiry."""
    try:
        data = status_view.gather(api)
    except ApiUnreachable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    if output is Output.JSON:
        typer.echo(json.dumps(data, indent=2))
    else:
        status_view.render(data, Console())


@app.command("proxy-config")
def proxy_config(
    workload: Annotated[
        str, typer.Argument(help="The workload (or gateway) whose sidecar to show")
    ],
    kind: Annotated[
        str | None,
        typer.Argument(help="listeners, routes, clusters, endpoints or secrets (default: all)"),
    ] = None,
    namespace: Annotated[str, typer.Option(help="The workload's namespace")] = "default",
    api: ApiOption = DEFAULT_API,
    context: ContextOption = None,
    kubeconfig: KubeconfigOption = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="table or json")] = Output.TABLE,
) -> None:
    """What the control plane sent a sidecar, next to what its Envoy has."""
    if kind is not None and kind not in proxy_config_view.TYPES:
        typer.echo(f"{kind!r} is not one of {', '.join(proxy_config_view.TYPES)}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        data = proxy_config_view.gather(api, workload, namespace)
    except ApiUnreachable as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    if output is Output.JSON:
        typer.echo(json.dumps(data, indent=2))
        return
    kinds = [kind] if kind else list(proxy_config_view.TYPES)
    proxy_config_view.render(data, kinds, Console())


@app.command()
def logs(
    workload: Annotated[str, typer.Argument(help="The workload (or gateway)")],
    sidecar: Annotated[
        bool, typer.Option(help="Show its sidecar's log instead of the app's")
    ] = False,
    follow: Annotated[bool, typer.Option("--follow", "-F", help="Keep printing new lines")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many last lines")] = 50,
    access: Annotated[
        bool, typer.Option(help="Only its sidecar's access-log lines (the requests)")
    ] = False,
    raw: Annotated[
        bool, typer.Option(help="Access-log lines as the sidecar wrote them (JSON)")
    ] = False,
    runtime_dir: RuntimeDirOption = DEFAULT_RUNTIME_DIR,
) -> None:
    """A workload's log (local mode). Its sidecar's log holds one access-log line per
    failed request (per request where a Telemetry asks), shown in words: who called,
    what, and why it failed, with the request's trace ID."""
    suffix = ".sidecar.log" if sidecar or access else ".log"
    path = runtime_dir / "logs" / f"{workload}{suffix}"
    if not path.exists():
        known = sorted(p.name.removesuffix(".log") for p in (runtime_dir / "logs").glob("*.log"))
        known = [k for k in known if not k.endswith(".sidecar")]
        typer.echo(
            f"no log for {workload!r} in {runtime_dir / 'logs'} "
            f"(workloads: {', '.join(known) or 'none: is the mesh up?'})",
            err=True,
        )
        raise typer.Exit(1)
    if access:
        render = access_log.raw_access_only if raw else access_log.render_access_only
    else:
        render = (lambda line: line) if raw else access_log.render
    follow_log(path, lines, follow, render)


kube_commands.register(app)
apply_commands.register(app)
join_commands.register(app)
token_commands.register(app)


def main() -> None:
    app(prog_name="sidemesh")


if __name__ == "__main__":
    main()
