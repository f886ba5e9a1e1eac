"""``sidemesh apply -f mesh.yaml --etcd URL`` against a real etcd: a bad file writes
nothing and says why (file, field, reason); a good one is written whole, and documents
the file no longer holds are removed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidemesh.sources.etcd import etcd_client
from tests.helpers.etcd import EtcdCluster, etcd_missing, single_etcd
from tests.sources.etcd.test_source import MESH

pytestmark = pytest.mark.skipif(etcd_missing() is not None, reason=str(etcd_missing()))


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = single_etcd(tmp_path / "etcd")
    yield cluster
    cluster.stop()


def _apply(path: Path, etcd: EtcdCluster, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "sidemesh",
            "apply",
            "-f",
            str(path),
            "--etcd",
            etcd.endpoints,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _keys(etcd: EtcdCluster) -> list[str]:
    async def read() -> list[str]:
        client = etcd_client(etcd.endpoints)
        try:
            return sorted(kv.key.decode() for kv in await client.get_prefix(b"/sidemesh/"))
        finally:
            await client.close()

    return asyncio.run(read())


def test_a_good_mesh_is_written_and_what_it_drops_is_removed(
    etcd: EtcdCluster, tmp_path: Path
) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(MESH)
    done = _apply(path, etcd)
    assert done.returncode == 0, done.stderr
    assert "2 services, 0 workloads, 1 policies" in done.stdout
    assert _keys(etcd) == ["/sidemesh/documents/HTTPRoute/default/b-route", "/sidemesh/mesh"]
    path.write_text(MESH.split("---")[0])
    again = _apply(path, etcd)
    assert again.returncode == 0, again.stderr
    assert "deleted" in again.stdout
    assert _keys(etcd) == ["/sidemesh/mesh"]


def test_a_bad_mesh_writes_nothing_and_says_why(etcd: EtcdCluster, tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(MESH.replace("port: 9080}]}\nworkloads", "port: 99999}]}\nworkloads"))
    done = _apply(path, etcd)
    assert done.returncode == 2
    assert f"{path}: services[1].ports[0].port" in done.stderr
    assert "nothing was written to etcd" in done.stderr
    assert _keys(etcd) == []


def test_a_dry_run_writes_nothing(etcd: EtcdCluster, tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(MESH)
    done = _apply(path, etcd, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "would apply" in done.stdout
    assert _keys(etcd) == []
