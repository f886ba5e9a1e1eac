"""etcd as the mesh's registry, against a real etcd (Debian's etcd-server) the test
starts: documents put there by ``apply``, registrations coming and going, a bad one
left out, a watch resumed after etcd restarts, and a compacted revision read again."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidemesh.model import MeshState, ServiceKey
from sidemesh.model.registry import Layout
from sidemesh.sources import Aggregator
from sidemesh.sources.etcd import EtcdSource, etcd_client
from sidemesh.sources.etcd.apply import apply, plan
from tests.helpers.etcd import EtcdCluster, etcd_missing, single_etcd

pytestmark = pytest.mark.skipif(etcd_missing() is not None, reason=str(etcd_missing()))

MESH = """
mesh: {trustDomain: example.org}
services:
  - {name: a, ports: [{port: 8080}]}
  - {name: b, ports: [{port: 9080}]}
workloads: []
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: b-route}
spec:
  parentRefs: [{group: "", kind: Service, name: b, port: 9080}]
  rules: [{backendRefs: [{name: b, port: 9080}]}]
"""
LAYOUT = Layout()


def registration(name: str, service: str, port: int, **extra: Any) -> bytes:
    """A workload on a host of its own (its address from its name)."""
    entry = {
        "name": name,
        "service": service,
        "address": f"10.9.{len(name)}.{sum(name.encode()) % 250 + 1}",
        "port": port,
        "appPort": port + 100,
    }
    return json.dumps({**entry, **extra}).encode()


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    cluster = single_etcd(tmp_path / "etcd")
    yield cluster
    cluster.stop()


async def _applied(etcd: EtcdCluster, tmp_path: Path, text: str = MESH) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    client = etcd_client(etcd.endpoints)
    try:
        await apply(client, plan(path, LAYOUT), LAYOUT)
    finally:
        await client.close()


class Running:
    def __init__(self, source: EtcdSource, aggregator: Aggregator) -> None:
        self.source = source
        self.aggregator = aggregator

    @property
    def state(self) -> MeshState:
        assert self.aggregator.state is not None
        return self.aggregator.state

    async def until(self, check: Callable[[MeshState], bool], timeout: float = 10) -> MeshState:
        deadline = asyncio.get_running_loop().time() + timeout
        while not check(self.state):
            assert asyncio.get_running_loop().time() < deadline, "the mesh state never got there"
            await asyncio.sleep(0.02)
        return self.state


@pytest.fixture
async def running(etcd: EtcdCluster, tmp_path: Path) -> AsyncIterator[Running]:
    await _applied(etcd, tmp_path)
    aggregator = Aggregator()
    source = EtcdSource(etcd_client(etcd.endpoints), aggregator.feed("etcd"), where=etcd.endpoints)
    await source.load_initial()
    task = asyncio.create_task(source.watch())
    yield Running(source, aggregator)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await source.client.close()


def workloads(state: MeshState, service: str) -> set[str]:
    return {w.name for w in state.workloads_of(ServiceKey(service, "default"))}


async def _put(etcd: EtcdCluster, key: bytes, value: bytes | None) -> None:
    client = etcd_client(etcd.endpoints)
    try:
        if value is None:
            await client.delete(key)
        else:
            await client.put(key, value)
    finally:
        await client.close()


async def test_what_apply_wrote_is_the_mesh(running: Running) -> None:
    state = running.state
    assert set(state.services) == {ServiceKey("a", "default"), ServiceKey("b", "default")}
    assert [r.metadata.name for r in state.policies.http_routes] == ["b-route"]
    assert state.mesh.trust_domain == "example.org"


async def test_registrations_come_and_go(running: Running, etcd: EtcdCluster) -> None:
    await _put(etcd, LAYOUT.registration("default", "b-1"), registration("b-1", "b", 9080))
    await _put(
        etcd,
        LAYOUT.registration("default", "b-2"),
        registration("b-2", "b", 9081, labels={"version": "v2"}),
    )
    state = await running.until(lambda s: workloads(s, "b") == {"b-1", "b-2"})
    workload = state.workload("b-2", "default")
    assert workload is not None and workload.labels == {"version": "v2"}
    await _put(etcd, LAYOUT.registration("default", "b-1"), None)
    await running.until(lambda s: workloads(s, "b") == {"b-2"})


async def test_a_bad_registration_is_left_out_and_said_once_while_the_rest_serves(
    running: Running, etcd: EtcdCluster, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        await _put(
            etcd, LAYOUT.registration("default", "x-1"), registration("x-1", "no-such", 7000)
        )
        await _put(etcd, LAYOUT.registration("default", "y-1"), b"{not json")
        await _put(etcd, LAYOUT.registration("default", "a-1"), registration("a-1", "a", 8080))
        await running.until(lambda s: workloads(s, "a") == {"a-1"})
    left_out = {k.decode(): " ".join(v) for k, v in running.source.left_out.items()}
    assert set(left_out) == {
        "/sidemesh/registrations/default/x-1",
        "/sidemesh/registrations/default/y-1",
    }
    assert "no-such" in left_out["/sidemesh/registrations/default/x-1"]
    assert "not JSON" in left_out["/sidemesh/registrations/default/y-1"]
    said = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(said) == 2, said


async def test_a_watch_resumes_after_etcd_restarts(running: Running, etcd: EtcdCluster) -> None:
    member = etcd.members[0]
    member.stop(signal.SIGKILL)
    initial = ",".join(f"{m.name}={m.peer_url}" for m in etcd.members)
    member.start(initial, state="existing")
    for _ in range(100):
        if member.healthy():
            break
        await asyncio.sleep(0.1)
    await _put(etcd, LAYOUT.registration("default", "b-1"), registration("b-1", "b", 9080))
    await running.until(lambda s: workloads(s, "b") == {"b-1"}, timeout=15)
    assert running.source.reads == 1, "resumed from its revision, not read again"


async def test_a_compacted_revision_is_read_again(etcd: EtcdCluster, tmp_path: Path) -> None:
    """A control plane cut off while etcd moved on and compacted its history."""
    await _applied(etcd, tmp_path)
    aggregator = Aggregator()
    source = EtcdSource(etcd_client(etcd.endpoints), aggregator.feed("etcd"))
    await source.load_initial()
    client = etcd_client(etcd.endpoints)
    try:
        await client.put(LAYOUT.registration("default", "b-1"), registration("b-1", "b", 9080))
        latest = await client.put(
            LAYOUT.registration("default", "b-2"), registration("b-2", "b", 9081)
        )
        await client.compact(latest.header.revision)
    finally:
        await client.close()
    task = asyncio.create_task(source.watch())
    try:
        running = Running(source, aggregator)
        await running.until(lambda s: workloads(s, "b") == {"b-1", "b-2"})
        assert source.reads == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.client.close()


async def test_an_unreachable_etcd_at_start_is_a_clear_error(tmp_path: Path) -> None:
    from sidemesh.errors import ConfigError

    aggregator = Aggregator()
    source = EtcdSource(
        etcd_client("http://127.0.0.1:9"), aggregator.feed("etcd"), where="http://127.0.0.1:9"
    )
    with pytest.raises(ConfigError, match="cannot read the mesh from etcd"):
        await source.load_initial()
    await source.client.close()
