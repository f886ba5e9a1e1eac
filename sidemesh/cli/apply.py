"""``sidemesh apply -f mesh.yaml --etcd URL``: put a mesh into etcd, validated first
exactly as the control plane loads it; a bad file writes nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sidemesh.errors import ConfigError
from sidemesh.model.registry import DEFAULT_PREFIX, Layout, grpc_target
from sidemesh.sources.etcd import etcd_client
from sidemesh.sources.etcd.apply import Plan, apply, plan
from sidemesh.sources.etcd.source import EtcdErrors

EXIT_BAD_INPUT = 2


def register(app: typer.Typer) -> None:
    app.command("apply")(apply_command)


def apply_command(
    file: Annotated[Path, typer.Option("--file", "-f", help="The mesh.yaml to apply")],
    etcd: Annotated[
        str,
        typer.Option(envvar="SIDEMESH_ETCD", help="The etcd cluster, http://HOST:PORT,..."),
    ],
    prefix: Annotated[
        str, typer.Option(envvar="SIDEMESH_ETCD_PREFIX", help="The mesh's key prefix")
    ] = DEFAULT_PREFIX,
    dry_run: Annotated[bool, typer.Option(help="Validate and show; write nothing")] = False,
) -> None:
    """Validate a mesh.yaml (and the files it includes), then write it into etcd in one
    transaction: the mesh and every policy document, removing documents an earlier
    apply wrote that the file no longer holds. Every control plane watching etcd
    serves it at once."""
    try:
        grpc_target(etcd)
    except ValueError as exc:
        typer.echo(f"--etcd: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    layout = Layout(prefix)
    try:
        planned = plan(file, layout)
    except ConfigError as exc:
        typer.echo(f"{exc}\nnothing was written to etcd", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    if dry_run:
        _show(planned, [], None)
        return
    try:
        deleted, revision = asyncio.run(_write(etcd, planned, layout))
    except EtcdErrors as exc:
        typer.echo(f"cannot write to etcd at {etcd}: {exc}; nothing was written", err=True)
        raise typer.Exit(1) from exc
    _show(planned, deleted, revision)


async def _write(endpoints: str, planned: Plan, layout: Layout) -> tuple[list[str], int]:
    client = etcd_client(endpoints)
    try:
        return await apply(client, planned, layout)
    finally:
        await client.close()


def _show(planned: Plan, deleted: list[str], revision: int | None) -> None:
    table = Table(title="applied" if revision is not None else "would apply (dry run)")
    table.add_column("key")
    table.add_column("change")
    for written in planned.puts:
        table.add_row(written.decode(), "written")
    for gone in deleted:
        table.add_row(gone, "deleted")
    console = Console()
    console.print(table)
    state = planned.state
    summary = (
        f"{len(state.services)} services, {len(state.workloads)} workloads, "
        f"{len(state.policies)} policies"
    )
    if revision is not None:
        console.print(f"etcd revision {revision}: {summary}")
    else:
        console.print(summary)
