"""The mesh.yaml source: reloads good edits, refuses bad ones and keeps the last good."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sidemesh.errors import ConfigError
from sidemesh.model import MeshState, ServiceKey
from sidemesh.sources import FileSource

GOOD = "services: [{name: a, ports: [{port: 80}]}]\n"


def _source(tmp_path: Path, text: str = GOOD) -> tuple[FileSource, list[MeshState]]:
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    seen: list[MeshState] = []
    return FileSource(path, seen.append), seen


def test_good_edit_becomes_the_next_version(tmp_path: Path) -> None:
    source, seen = _source(tmp_path)
    source.load_initial()
    assert source.check() is False  # unchanged file: nothing to do
    source.path.write_text(
        "services:\n  - {name: a, ports: [{port: 80}]}\n  - {name: b, ports: [{port: 81}]}\n"
    )
    assert source.check() is True
    assert [s.version for s in seen] == [1, 2]
    # Unchanged services are the same objects as before, so translation can skip them.
    key = ServiceKey("a", "default")
    assert seen[1].services[key] is seen[0].services[key]


def test_bad_edit_keeps_last_good_state(tmp_path: Path) -> None:
    source, seen = _source(tmp_path)
    source.load_initial()
    source.path.write_text("services: [{name: a, ports: [{port: 80, protocol: htp}]}]\n")
    assert source.check() is False
    assert source.rejected == 1
    assert source.state is seen[0]
    assert source.last_error is not None
    assert "services[0].ports[0].protocol: 'htp' is not one of" in str(source.last_error)
    source.path.write_text(GOOD.replace("80", "8080"))
    assert source.check() is True
    assert source.last_error is None and seen[-1].version == 2


def test_file_deleted_while_running_keeps_state(tmp_path: Path) -> None:
    source, seen = _source(tmp_path)
    source.load_initial()
    source.path.unlink()
    assert source.check() is False
    assert "cannot read file" in str(source.last_error)
    assert source.state is seen[0]


def test_bad_file_at_start_raises(tmp_path: Path) -> None:
    source, seen = _source(tmp_path, "services: 3\n")
    with pytest.raises(ConfigError, match="services: Input should be a valid tuple"):
        source.load_initial()
    assert seen == []


async def test_watch_picks_up_edits(tmp_path: Path) -> None:
    source, seen = _source(tmp_path)
    source.load_initial()
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
