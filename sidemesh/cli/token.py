"""``sidemesh token create``: a bootstrap token for a workload that does not run on the
control plane's host, for its agent (``sidemesh join``, ``sidemesh sidecar``) to prove
which workload it is, as ``kubeadm token create`` hands a node its join token."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sidemesh.identity.ca import write_private
from sidemesh.identity.tokens import BootstrapTokens
from sidemesh.model.refs import WorkloadRef
from sidemesh.settings import DEFAULT_STATE_DIR

token_app = typer.Typer(help="Bootstrap tokens for workloads on other hosts.")


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")


@token_app.command("create")
def create(
    workload: Annotated[str, typer.Option("--workload", "-w", help="The workload's name")],
    namespace: Annotated[str, typer.Option(help="The workload's namespace")] = "default",
    state_dir: Annotated[
        Path,
        typer.Option(envvar="SIDEMESH_STATE_DIR", help="The control plane's state directory"),
    ] = DEFAULT_STATE_DIR,
    out: Annotated[
        Path | None,
        typer.Option(help="Write the token to this file (0600) instead of printing it"),
    ] = None,
) -> None:
    """Make (or show) WORKLOAD's bootstrap token in the control plane's state directory:
    the CA accepts it from the workload's agent once the workload is in the mesh (in
    mesh.yaml, or registered by its agent). Run it where the control plane keeps its
    state; copy the token to the workload's host (the host file's tokenDir)."""
    tokens = BootstrapTokens(state_dir / "tokens")
    path = tokens.ensure(WorkloadRef(workload, namespace))
    token = path.read_bytes().strip()
    if out is None:
        typer.echo(token.decode())
        return
    write_private(out, token + b"\n")
    typer.echo(f"{workload}.{namespace}: token written to {out} (0600)", err=True)
