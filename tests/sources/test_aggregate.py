"""The aggregator: merges the sources' snapshots, alone numbers versions, reuses
unchanged objects, and lets a refusal change nothing. The sources here are in memory:
each reports whatever a test gives it, as the model's loader validated it."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from sidemesh.errors import ConfigError, Problem
from sidemesh.model import MeshState, ServiceKey, parse_mesh_document
from sidemesh.sources import Aggregator, Feed, FileSource, Snapshot, Source
from tests.conftest import MULTI_SERVICE_MESH

FILE = """
mesh: {trustDomain: example.org}
services: [{name: a, ports: [{port: 80}]}]
workloads:
  - {name: a-1, service: a, port: 9001, appPort: 9101, sidecar: {outboundPort: 9201}}
"""
REGISTRY = """
mesh: {trustDomain: elsewhere.org}
services: [{name: b, ports: [{port: 81}]}]
workloads:
  - {name: b-1, service: b, port: 9002, appPort: 9102, sidecar: {outboundPort: 9202}}
"""


class MemorySource:
    """A ``Source`` whose knowledge a test sets: each ``set`` reports it whole."""

    def __init__(self, feed: Feed, text: str) -> None:
        self.feed = feed
        self.text = text

    async def load_initial(self) -> Snapshot:
        return self.load()

    def load(self) -> Snapshot:
        return self.set(self.text)

    async def watch(self) -> None:
        await asyncio.Event().wait()

    def set(self, text: str, version: int = 0) -> Snapshot:
        """``version`` is whatever the source's loader was given: it must not matter."""
        snapshot = parse_mesh_document(text, self.feed.name, version)
        self.feed.offer(snapshot)
        return snapshot


def _one_source(text: str = MULTI_SERVICE_MESH) -> tuple[MemorySource, list[MeshState]]:
    seen: list[MeshState] = []
    source = MemorySource(Aggregator([seen.append]).feed("memory"), text)
    source.load()
    return source, seen


def test_versions_are_numbered_by_the_aggregator_whatever_the_snapshots_say() -> None:
    source, seen = _one_source()
    source.set(MULTI_SERVICE_MESH, version=42)
    source.set(MULTI_SERVICE_MESH, version=7)
    assert [state.version for state in seen] == [1, 2, 3]
    assert source.feed.aggregator.state is seen[-1]


def test_unchanged_objects_stay_the_very_same_objects_across_versions() -> None:
    source, seen = _one_source()
    source.set(MULTI_SERVICE_MESH.replace("appPort: 21022", "appPort: 21025"))
    before, after = seen
    key = ServiceKey("reviews", "default")
    assert after.services[key] is before.services[key]
    assert after.mesh is before.mesh
    assert after.gateways[("ingress", "default")] is before.gateways[("ingress", "default")]
    unchanged, changed = ("reviews-v1", "default"), ("ratings-1", "default")
    assert after.workloads[unchanged] is before.workloads[unchanged]
    assert after.workloads[changed] is not before.workloads[changed]
    assert after.workloads[changed].ports[0].app_port == 21025


def test_a_refused_input_changes_nothing_but_the_sources_record_of_refusals() -> None:
    source, seen = _one_source()
    aggregator = source.feed.aggregator
    served = aggregator.state
    error = ConfigError("memory", [Problem("services[0].name", "bad")])
    source.feed.refuse(error)
    assert aggregator.state is served and seen == [served]
    assert source.feed.rejected == 1 and source.feed.last_error is error
    source.set(MULTI_SERVICE_MESH)
    assert [state.version for state in seen] == [1, 2]
    assert source.feed.rejected == 1 and source.feed.last_error is None


def test_two_sources_are_merged_with_the_first_sources_mesh_settings() -> None:
    seen: list[MeshState] = []
    aggregator = Aggregator([seen.append])
    file = MemorySource(aggregator.feed("mesh.yaml"), FILE)
    registry = MemorySource(aggregator.feed("registry"), REGISTRY)
    file.load()
    assert seen == [] and aggregator.state is None  # the registry has not reported yet
    registry.load()
    (merged,) = seen
    assert merged.version == 1
    assert set(merged.services) == {ServiceKey("a", "default"), ServiceKey("b", "default")}
    assert set(merged.workloads) == {("a-1", "default"), ("b-1", "default")}
    assert merged.mesh.trust_domain == "example.org"
    assert [w.name for w in merged.workloads_of(ServiceKey("b", "default"))] == ["b-1"]


def test_warnings_of_every_source_are_kept_in_source_order() -> None:
    seen: list[MeshState] = []
    aggregator = Aggregator([seen.append])
    aggregator.feed("mesh.yaml").offer(
        replace(parse_mesh_document(FILE, "mesh.yaml"), warnings=("mesh.yaml: first",))
    )
    aggregator.feed("registry").offer(
        replace(parse_mesh_document(REGISTRY, "registry"), warnings=("registry: second",))
    )
    assert seen[-1].warnings == ("mesh.yaml: first", "registry: second")


def test_a_change_in_one_source_keeps_the_others_objects_as_they_were() -> None:
    seen: list[MeshState] = []
    aggregator = Aggregator([seen.append])
    file = MemorySource(aggregator.feed("mesh.yaml"), FILE)
    registry = MemorySource(aggregator.feed("registry"), REGISTRY)
    file.load()
    registry.load()
    registry.set(REGISTRY.replace("9102", "9112"))
    before, after = seen
    assert after.version == 2
    assert after.workloads[("a-1", "default")] is before.workloads[("a-1", "default")]
    assert after.workloads[("b-1", "default")].ports[0].app_port == 9112


def test_when_two_sources_hold_the_same_object_the_first_wins_and_the_clash_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[MeshState] = []
    aggregator = Aggregator([seen.append])
    file = MemorySource(aggregator.feed("mesh.yaml"), FILE)
    other = MemorySource(aggregator.feed("registry"), FILE.replace("port: 80", "port: 8080"))
    file.load()
    with caplog.at_level(logging.WARNING):
        other.load()
    (merged,) = seen
    assert merged.services[ServiceKey("a", "default")].ports[0].port == 80
    assert "services: a.default differs between mesh.yaml and registry; mesh.yaml's is used" in (
        caplog.text
    )


def test_the_file_source_and_an_in_memory_source_are_both_sources(tmp_path: Path) -> None:
    aggregator = Aggregator()
    # The annotation is the test (mypy): each satisfies the protocol the control plane runs.
    sources: list[Source] = [
        MemorySource(aggregator.feed("memory"), FILE),
        FileSource(tmp_path / "mesh.yaml", aggregator.feed("mesh.yaml")),
    ]
    assert [feed.name for feed in aggregator.feeds] == ["memory", "mesh.yaml"]
    assert len(sources) == 2
