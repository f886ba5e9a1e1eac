"""``sidemesh install`` / ``uninstall`` (the control plane's manifests, printed or
applied), ``sidemesh inject`` (manifests with the sidecar, offline, as the webhook would
make them), ``sidemesh ready`` (the sidecar's startup probe) and ``sidemesh redirect``
(the init container's traffic redirect)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import yaml

from sidemesh.agent.sidecar import ADMIN_SOCKET
from sidemesh.kube.inject import InjectConfig, inject_manifest
from sidemesh.kube.install import (
    InstallOptions,
    install_manifests,
    object_path,
    to_yaml,
    uninstall_references,
)
from sidemesh.kube.redirect import INBOUND_CAPTURE_PORT, OUTBOUND_CAPTURE_PORT, PROXY_UID, Redirect
from sidemesh.sources.kube.client import KubeApi, KubeApiError
from sidemesh.telemetry.admin import admin_client_sync

FIELD_MANAGER = "sidemesh"

EXIT_BAD_INPUT = 2


def register(app: typer.Typer) -> None:
    app.command()(inject)
    app.command()(ready)
    app.command()(redirect)
    app.command()(install)
    app.command()(uninstall)


ContextOption = Annotated[
    str | None, typer.Option("--context", help="kubeconfig context (kubectl's current one)")
]
KubeconfigOption = Annotated[
    Path | None, typer.Option("--kubeconfig", envvar="KUBECONFIG", help="kubeconfig file")
]
NamespaceOption = Annotated[
    str, typer.Option("--namespace", "-n", help="Where the control plane runs")
]


def install(
    namespace: NamespaceOption = "sidemesh-system",
    image: Annotated[str, typer.Option(help="The sidemesh image")] = InjectConfig.image,
    replicas: Annotated[int, typer.Option(min=1, help="Control plane replicas")] = 2,
    trust_domain: Annotated[str, typer.Option(help="SPIFFE trust domain")] = "cluster.local",
    fail_closed: Annotated[
        bool,
        typer.Option(help="Refuse to create pods while the injection webhook is down"),
    ] = False,
    generate_ca: Annotated[
        bool,
        typer.Option(
            help="Make a fresh root and intermediate CA into the sidemesh-ca Secret "
            "(else create it from your own CA first)"
        ),
    ] = False,
    apply: Annotated[
        bool, typer.Option("--apply", help="Apply through the Kubernetes API, not print")
    ] = False,
    context: ContextOption = None,
    kubeconfig: KubeconfigOption = None,
) -> None:
    """Print every manifest of the control plane (namespace, CRDs, RBAC, Deployment,
    Service, webhook configurations), for `kubectl apply -f -`; or apply them."""
    options = InstallOptions(
        namespace=namespace,
        image=image,
        replicas=replicas,
        trust_domain=trust_domain,
        fail_open=not fail_closed,
        generate_ca=generate_ca,
    )
    objects = install_manifests(options)
    if not apply:
        typer.echo(to_yaml(objects), nl=False)
        if not generate_ca:
            typer.echo(
                f"# the control plane needs Secret {namespace}/sidemesh-ca: create it from your "
                "CA (root-cert.pem, ca-cert.pem, ca-key.pem) or re-run with --generate-ca",
                err=True,
            )
        return
    asyncio.run(_write(objects, context, kubeconfig, delete=False))


def uninstall(
    namespace: NamespaceOption = "sidemesh-system",
    apply: Annotated[
        bool, typer.Option("--apply", help="Delete through the Kubernetes API, not print")
    ] = False,
    context: ContextOption = None,
    kubeconfig: KubeconfigOption = None,
) -> None:
    """Print what `install` made, for `kubectl delete -f -` (the CRDs last: deleting
    them deletes every policy of their kinds); or delete it."""
    objects = uninstall_references(InstallOptions(namespace=namespace))
    if not apply:
        typer.echo(to_yaml(objects), nl=False)
        return
    asyncio.run(_write(objects, context, kubeconfig, delete=True))


async def _write(
    objects: list[dict[str, Any]], context: str | None, kubeconfig: Path | None, delete: bool
) -> None:
    try:
        api = await KubeApi.connect(context, kubeconfig)
    except KubeApiError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    failed = 0
    try:
        for obj in objects:
            path = object_path(obj)
            what = f"{obj['kind']} {obj['metadata']['name']}"
            try:
                if delete:
                    await api.delete(path)
                else:
                    await api.apply(path, obj, FIELD_MANAGER)
            except KubeApiError as exc:
                if delete and exc.status == 404:
                    typer.echo(f"{what}: not there")
                    continue
                failed += 1
                typer.echo(f"{what}: {exc}", err=True)
                continue
            typer.echo(f"{what}: {'deleted' if delete else 'applied'}")
    finally:
        await api.close()
    if failed:
        raise typer.Exit(1)


def inject(
    file: Annotated[
        Path, typer.Option("--file", "-f", help="Manifests (YAML, several documents), - for stdin")
    ],
    image: Annotated[str, typer.Option(help="The sidemesh image")] = InjectConfig.image,
    control_plane: Annotated[
        str, typer.Option(help="The control plane's xDS address, HOST:PORT")
    ] = InjectConfig.control_plane,
    ca_address: Annotated[
        str, typer.Option(help="The control plane's CA, HOST:PORT")
    ] = InjectConfig.ca_address,
) -> None:
    """Print the manifests with the sidecar added to every pod (template) that should
    have it, as the injection webhook would: Pods, Deployments, StatefulSets,
    DaemonSets, ReplicaSets, Jobs and CronJobs; everything else as it was."""
    config = InjectConfig(image=image, control_plane=control_plane, ca_address=ca_address)
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        typer.echo(f"{file}: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    out: list[Any] = []
    for i, document in enumerate(documents):
        if not isinstance(document, dict):
            typer.echo(f"{file}: document {i + 1} is not a mapping (a Kubernetes object)", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        done, decision = inject_manifest(document, config)
        if decision is not None:
            name = (document.get("metadata") or {}).get("name", "?")
            typer.echo(f"# {document.get('kind')} {name}: {decision.reason}", err=True)
        out.append(done)
    typer.echo(yaml.safe_dump_all(out, sort_keys=False), nl=False)


def ready(
    socket_dir: Annotated[Path, typer.Option(help="The sidecar's socket directory")],
) -> None:
    """Exit 0 once the sidecar's Envoy is LIVE (its listeners and certificate from the
    control plane), else 1: the native sidecar's startup probe."""
    try:
        with admin_client_sync(str(socket_dir / ADMIN_SOCKET), timeout_s=1.5) as client:
            reply = client.get("/ready")
    except httpx.HTTPError as exc:
        typer.echo(f"not ready: no answer from Envoy's admin: {exc}", err=True)
        raise typer.Exit(1) from exc
    if reply.status_code != 200:
        typer.echo(f"not ready: {reply.text.strip()}", err=True)
        raise typer.Exit(1)
    typer.echo(reply.text.strip())


def redirect(
    inbound_port: Annotated[
        int, typer.Option(help="Where inbound TCP goes")
    ] = INBOUND_CAPTURE_PORT,
    outbound_port: Annotated[
        int, typer.Option(help="Where outbound TCP goes")
    ] = OUTBOUND_CAPTURE_PORT,
    proxy_uid: Annotated[
        int, typer.Option(help="The proxy's UID: its traffic is not redirected")
    ] = PROXY_UID,
    exclude_inbound_port: Annotated[
        list[int] | None, typer.Option(help="Inbound ports left alone (repeat)")
    ] = None,
    exclude_outbound_port: Annotated[
        list[int] | None, typer.Option(help="Outbound ports left alone (repeat)")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the rules, change nothing")] = False,
) -> None:
    """Install the pod's traffic redirect (nat table, through iptables-restore, all at
    once or nothing): what the injected init container runs."""
    rules = Redirect(
        inbound_port,
        outbound_port,
        proxy_uid,
        tuple(exclude_inbound_port or ()),
        tuple(exclude_outbound_port or ()),
    ).rules()
    if dry_run:
        typer.echo(rules, nl=False)
        return
    done = subprocess.run(
        ["iptables-restore", "--noflush"], input=rules, text=True, capture_output=True
    )
    if done.returncode != 0:
        typer.echo(f"iptables-restore refused the redirect: {done.stderr.strip()}", err=True)
        raise typer.Exit(1)
    typer.echo("traffic redirect installed")
