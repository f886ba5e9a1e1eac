"""The mesh.yaml source: reloads good edits, refuses bad ones and keeps the last good.

Each source here reports to an aggregator of its own; ``seen`` is what that aggregator
published, ``_served`` what it serves now."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from sidemesh.errors import ConfigError
from sidemesh.model import MeshState, ServiceKey, parse_mesh_document
from sidemesh.sources import Aggregator, FileSource

GOOD = "services: [{name: a, ports: [{port: 80}]}]\n"


def _file_source(path: Path, seen: list[MeshState], **options: Any) -> FileSource:
    """A file source alone in front of an aggregator that appends what it publishes."""
    return FileSource(path, Aggregator([seen.append]).feed(str(path)), **options)


def _source(tmp_path: Path, text: str = GOOD) -> tuple[FileSource, list[MeshState]]:
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    seen: list[MeshState] = []
    return _file_source(path, seen), seen


def _served(source: FileSource) -> MeshState | None:
    """The state the source's aggregator serves now."""
    return source.feed.aggregator.state


def _edit(source: FileSource, text: str | None) -> None:
    """Write (or, with None, delete) the file as an editor that finished a while ago."""
    if text is None:
        source.path.unlink()
        return
    source.path.write_text(text)
    past = time.time() - 1
    os.utime(source.path, (past, past))


def _settled_check(source: FileSource) -> bool:
    """Two polls: the first sees the change, the second reads it once it held still."""
    assert source.check() is False
    return source.check()


def test_good_edit_becomes_the_next_version(tmp_path: Path) -> None:
    source, seen = _source(tmp_path)
    source.load()
    assert source.check() is False  # unchanged file: nothing to do
    _edit(
        source,
        "services:\n  - {name: a, ports: [{port: 80}]}\n  - {name: b, ports: [{port: 81}]}\n",
    )
    assert _settled_check(source) is True
    assert [s.version for s in seen] == [1, 2]
    # Unchanged services are the same objects as before, so translation can skip them.
    key = ServiceKey("a", "default")
    assert seen[1].services[key] is seen[0].services[key]


def test_bad_edit_keeps_last_good_state(tmp_path: Path) -> None:
    source, seen = _source(tmp_path)
    source.load()
    _edit(source, "services: [{name: a, ports: [{port: 80, protocol: htp}]}]\n")
    assert _settled_check(source) is False
    assert source.rejected == 1
    assert _served(source) is seen[0]
    assert source.last_error is not None
    assert "services[0].ports[0].protocol: 'htp' is not one of" in str(source.last_error)
    _edit(source, GOOD.replace("80", "8080"))
    assert _settled_check(source) is True
    assert source.last_error is None and seen[-1].version == 2


def test_file_deleted_while_running_keeps_state(tmp_path: Path) -> None:
    source, seen = _source(tmp_path)
    source.load()
    _edit(source, None)
    assert _settled_check(source) is False
    assert "cannot read file" in str(source.last_error)
    assert _served(source) is seen[0]


def test_bad_file_at_start_raises(tmp_path: Path) -> None:
    source, seen = _source(tmp_path, "services: 3\n")
    with pytest.raises(ConfigError, match="services: Input should be a valid tuple"):
        source.load()
    assert seen == []


async def test_watch_picks_up_edits(tmp_path: Path) -> None:
    source, seen = _source(tmp_path)
    source.load()
    task = asyncio.create_task(source.watch(interval=0.01))
    try:
        source.path.write_text(GOOD.replace("80", "8080"))
        for _ in range(500):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(seen) == 2
    finally:
        task.cancel()


WITH_WORKLOADS = "services: [{name: a, ports: [{port: 80}]}]\nworkloads:\n" + "".join(
    f"  - {{name: a-{i}, service: a, port: {9000 + i}, appPort: {9100 + i}, "
    f"sidecar: {{outboundPort: {9200 + i}}}}}\n"
    for i in range(4)
)


@pytest.mark.parametrize("text", ["", "\n   \n", "# nothing here yet\n"])
def test_an_emptied_file_is_refused_and_every_workload_keeps_running(
    tmp_path: Path, text: str
) -> None:
    source, seen = _source(tmp_path, WITH_WORKLOADS)
    source.load()
    _edit(source, text)
    assert _settled_check(source) is False
    assert source.rejected == 1 and "write `workloads: []`" in str(source.last_error)
    served = _served(source)
    assert served is not None
    assert seen == [served] and len(served.workloads) == 4


def test_stopping_every_workload_takes_an_explicit_empty_list(tmp_path: Path) -> None:
    source, seen = _source(tmp_path, WITH_WORKLOADS)
    source.load()
    _edit(source, GOOD)  # the workloads key is gone: a mangled file, most likely
    assert _settled_check(source) is False
    assert "workloads: missing: this edit would stop every workload" in str(source.last_error)
    _edit(source, GOOD + "workloads: []\n")
    assert _settled_check(source) is True
    assert seen[-1].workloads == {}


def test_a_file_still_being_written_is_not_read(tmp_path: Path) -> None:
    source, seen = _source(tmp_path, WITH_WORKLOADS)
    source.load()
    # Half of a save: cut mid-line, and just written.
    source.path.write_text(WITH_WORKLOADS[: len(WITH_WORKLOADS) // 2])
    assert source.check() is False
    assert source.check() is False  # written a moment ago: not settled yet
    assert source.rejected == 0 and source.last_error is None
    source.path.write_text(WITH_WORKLOADS.replace("9000", "9010"))
    past = time.time() - 1
    os.utime(source.path, (past, past))
    assert _settled_check(source) is True
    assert source.rejected == 0 and len(seen) == 2


def test_an_edit_removing_most_workloads_is_logged_with_their_names(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source, seen = _source(tmp_path, WITH_WORKLOADS)
    source.load()
    kept = WITH_WORKLOADS.split("  - ")[0] + "  - " + WITH_WORKLOADS.split("  - ")[1]
    with caplog.at_level(logging.WARNING):
        _edit(source, kept)
        assert _settled_check(source) is True
    assert len(seen[-1].workloads) == 1
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert "removes 3 of 4 workloads: a-1.default, a-2.default, a-3.default" in warning.getMessage()


def test_a_bad_file_at_start_serves_the_fallback_and_reports_the_error(tmp_path: Path) -> None:
    last_good = parse_mesh_document(WITH_WORKLOADS, "mesh.yaml")
    path = tmp_path / "mesh.yaml"
    path.write_text("services: 3\nworkloads: []\n")
    seen: list[MeshState] = []
    source = _file_source(path, seen, fallback=lambda: last_good)
    assert source.load() is last_good
    assert seen == [last_good] and source.rejected == 1
    assert "services: Input should be a valid tuple" in str(source.last_error)


def test_an_edit_taking_a_control_plane_port_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(WITH_WORKLOADS)
    seen: list[MeshState] = []
    source = _file_source(path, seen, reserved_ports={9001: "the control plane's xDS port"})
    with pytest.raises(ConfigError, match="the control plane's xDS port"):
        source.load()
    path.write_text(WITH_WORKLOADS.replace("9001", "9091"))
    source.load()
    _edit(source, WITH_WORKLOADS)
    assert _settled_check(source) is False
    assert "workloads[1].port" in str(source.last_error), source.last_error
    assert "the control plane's xDS port" in str(source.last_error)


def test_a_restart_is_not_a_way_round_the_explicit_empty_list(tmp_path: Path) -> None:
    last_good = parse_mesh_document(WITH_WORKLOADS, "mesh.yaml")
    path = tmp_path / "mesh.yaml"
    path.write_text(GOOD)  # the workloads key lost while the control plane was down
    source = _file_source(path, [], fallback=lambda: last_good)
    assert source.load() is last_good
    assert "this edit would stop every workload" in str(source.last_error)


def test_an_edit_of_an_included_policy_file_is_an_edit_of_the_mesh(tmp_path: Path) -> None:
    route = tmp_path / "route.yaml"
    route.write_text(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n"
        "spec: {parentRefs: [{group: '', kind: Service, name: a}]}\n"
    )
    source, seen = _source(tmp_path, GOOD + "include: [route.yaml]\n")
    source.load()
    assert len(seen[-1].policies.http_routes) == 1
    route.write_text(route.read_text().replace("name: r}", "name: r2}"))
    past = time.time() - 1
    os.utime(route, (past, past))
    assert _settled_check(source) is True
    assert seen[-1].policies.http_routes[0].metadata.name == "r2"
