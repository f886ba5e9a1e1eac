"""``sidemesh join -f host.yaml``: one agent on this host for every workload the host
file names: each its own key, certificate, sockets and Envoy, one Python process."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from sidemesh.agent.host import HostAgent, Hosted
from sidemesh.agent.hostfile import HostFile, HostWorkload, load_host_file
from sidemesh.agent.registration import EtcdRegistration
from sidemesh.agent.sidecar import ADMIN_SOCKET, SDS_SOCKET, Agent, IdentityParams
from sidemesh.cli.logs import LogFormat, setup_logging
from sidemesh.envoy import ProxyId
from sidemesh.envoy.bootstrap import BootstrapParams, XdsMode
from sidemesh.errors import ConfigError
from sidemesh.model.registry import Layout, grpc_target
from sidemesh.settings import DEFAULT_CA_PORT

EXIT_BAD_INPUT = 2


def register(app: typer.Typer) -> None:
    app.command()(join)


def join(
    file: Annotated[Path, typer.Option("--file", "-f", help="The host file")],
    xds_mode: Annotated[XdsMode, typer.Option(help="delta or sotw")] = XdsMode.DELTA,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run this host's workloads in the mesh: one agent gets each its certificate,
    registers it, and runs and supervises its Envoy, until stopped (SIGTERM drains
    and deregisters every workload)."""
    setup_logging(LogFormat.TEXT, log_level)
    field = "controlPlane"
    try:
        host = load_host_file(file)
        replicas = control_planes(host.control_plane)
        field = "etcd"
        if host.etcd is not None:
            grpc_target(host.etcd)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    except ValueError as exc:
        typer.echo(f"{file}: {field}: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    root = host.socket_root or Path(tempfile.mkdtemp(prefix="sidemesh-"))
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    hosted = [_hosted(host, w, replicas, root, xds_mode, log_level) for w in host.workloads]
    try:
        code = asyncio.run(HostAgent(hosted).run())
    finally:
        for workload in host.workloads:
            shutil.rmtree(root / workload.name, ignore_errors=True)
    raise typer.Exit(code)


def control_planes(text: str) -> list[tuple[str, int]]:
    """``HOST:PORT,...`` (every replica of the control plane); raises ``ValueError``
    naming the item that is not ``HOST:PORT``."""
    out = []
    for item in text.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{item!r} is not HOST:PORT")
        out.append((host, int(port)))
    return out


def ca_urls(ca_address: str | None, replicas: list[tuple[str, int]]) -> str:
    """The CA endpoints to try, in order: those given, else each replica's host on the
    CA's default port."""
    cas = ca_address or ",".join(f"{h}:{DEFAULT_CA_PORT}" for h, _ in replicas)
    return ",".join(f"https://{a.strip()}" for a in cas.split(","))


def _hosted(
    host: HostFile,
    workload: HostWorkload,
    replicas: list[tuple[str, int]],
    root: Path,
    xds_mode: XdsMode,
    log_level: str,
) -> Hosted:
    sockets = root / workload.name
    (first_host, first_port), others = replicas[0], tuple(replicas[1:])
    params = BootstrapParams(
        proxy=ProxyId(workload.name, workload.namespace),
        service=workload.service,
        control_plane_host=first_host,
        control_plane_port=first_port,
        other_control_planes=others,
        admin_socket=str(sockets / ADMIN_SOCKET),
        sds_socket=str(sockets / SDS_SOCKET),
        xds_mode=xds_mode,
    )
    identity = IdentityParams(
        ca_url=ca_urls(host.ca_address, replicas),
        token_file=(host.token_dir or host.state_dir / "tokens")
        / f"{workload.name}.{workload.namespace}.token",
        ca_bundle=host.ca_bundle or host.state_dir / "ca" / "root-cert.pem",
    )

    def make() -> Agent:
        # A private directory per workload, made afresh for each start: its sockets
        # (the SDS one hands out its key) are for its own Envoy only.
        shutil.rmtree(sockets, ignore_errors=True)
        sockets.mkdir(mode=0o700)
        registration = None
        if host.etcd is not None:
            registration = EtcdRegistration(
                host.etcd,
                workload.namespace,
                workload.registration(),
                layout=Layout(host.etcd_prefix),
                ttl_s=host.lease_ttl,
            )
        return Agent(
            params,
            identity,
            sockets,
            log_level,
            host.concurrency,
            registration=registration,
            handle_signals=False,
        )

    return Hosted(f"{workload.name}.{workload.namespace}", make)
