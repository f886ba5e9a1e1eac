"""On-demand discovery over a real gRPC socket: a delta sidecar asks for a Host over
VHDS and is answered after the clusters and endpoints the answer needs; an endpoint
change reaches only the proxies holding that service. The client plays Envoy
(``tests/xds/test_server.Envoy``); real Envoys are in tests/e2e/test_on_demand.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sidemesh.envoy import ResourceType
from sidemesh.model import MeshState
from tests.xds.test_server import (
    CDS,
    EDS,
    LDS,
    RDS,
    REVIEWS_GRPC,
    Envoy,
    Plane,
    delta_resources,
    serving,
)

VHDS = ResourceType.VIRTUAL_HOST
API = "outbound|80||api.default"
ASK_API = "outbound-http/api.default"


@pytest.fixture
async def plane(multi_service_state: MeshState) -> AsyncIterator[Plane]:
    async with serving(multi_service_state, on_demand=True) as made:
        yield made


async def _connected(plane: Plane) -> tuple[Envoy, set[str]]:
    """A productpage sidecar through its first round: clusters, endpoints, listeners,
    the route configuration and its virtual hosts."""
    envoy = plane.envoy(delta=True)
    await envoy.delta_request(CDS)
    cds = await envoy.expect(CDS)
    clusters = set(delta_resources(cds))
    await envoy.ack(cds)
    eds_names = sorted(n for n in clusters if n.startswith("outbound|"))
    await envoy.delta_request(EDS, eds_names)
    await envoy.ack(await envoy.expect(EDS))
    await envoy.delta_request(LDS)
    await envoy.ack(await envoy.expect(LDS))
    await envoy.delta_request(RDS, ["outbound-http"])
    await envoy.ack(await envoy.expect(RDS))
    await envoy.delta_request(VHDS)
    vhds = await envoy.expect(VHDS)
    await envoy.ack(vhds)
    return envoy, clusters


async def test_a_sidecar_holds_its_upstreams_and_learns_a_host_when_asked(plane: Plane) -> None:
    envoy, clusters = await _connected(plane)
    assert API not in clusters
    assert {"outbound|9080||reviews.default", "outbound|5432||db.default"} <= clusters

    await envoy.delta_request(VHDS, [ASK_API])  # what Envoy's on_demand filter sends
    cds = await envoy.expect(CDS)
    assert API in delta_resources(cds)
    await envoy.ack(cds)
    # The answer waits for the cluster's endpoints: Envoy resumes the request on it.
    await envoy.expect_nothing()
    await envoy.delta_request(EDS, [API])
    eds = await envoy.expect(EDS)
    assert API in delta_resources(eds)
    vhds = await envoy.expect(VHDS)
    (answer,) = [r for r in vhds.resources if ASK_API in r.aliases]
    assert answer.name == "outbound-http/api.default:80" and answer.HasField("resource")


async def test_an_unknown_host_is_answered_with_the_way_out(plane: Plane) -> None:
    envoy, _ = await _connected(plane)
    await envoy.delta_request(VHDS, ["outbound-http/example.com"])
    vhds = await envoy.expect(VHDS)
    (answer,) = vhds.resources
    assert list(answer.aliases) == ["outbound-http/example.com"]


async def test_an_endpoint_change_reaches_only_the_proxies_that_hold_the_service(
    plane: Plane,
) -> None:
    envoy, _ = await _connected(plane)
    translations = plane.publisher.translations
    # api is held by nobody: moving its workload translates no proxy and pushes nothing.
    moved = plane.state.workloads[("api-1", "default")].model_copy(update={"port": 21044})
    state = MeshState(
        2,
        plane.state.mesh,
        plane.state.services,
        {**plane.state.workloads, ("api-1", "default"): moved},
        plane.state.gateways,
        plane.state.policies,
    ).reuse_unchanged(plane.state)
    plane.publisher.update_state(state)
    assert plane.publisher.translations == translations
    await envoy.expect_nothing()
    assert plane.cache.get("sidecar~productpage-1~default").state_version == 2  # type: ignore[union-attr]
    # reviews is held: moving one of its workloads pushes its endpoints.
    moved = state.workloads[("reviews-v1", "default")].model_copy(update={"address": "127.0.0.9"})
    third = MeshState(
        3,
        state.mesh,
        state.services,
        {**state.workloads, ("reviews-v1", "default"): moved},
        state.gateways,
        state.policies,
    ).reuse_unchanged(state)
    plane.publisher.update_state(third)
    assert plane.publisher.translations == translations + 1
    eds = await envoy.expect(EDS)
    assert set(delta_resources(eds)) == {"outbound|9080||reviews.default", REVIEWS_GRPC}


async def test_a_reconnected_sidecar_is_told_which_virtual_hosts_it_no_longer_holds(
    plane: Plane,
) -> None:
    """After a reconnect (or a failover to another replica) Envoy says what it holds;
    what the control plane no longer sends it is removed, not left to clash."""
    envoy = plane.envoy(delta=True)
    stale = "outbound-http/denied|reviews"
    await envoy.delta_request(VHDS, initial={stale: "0123"})
    vhds = await envoy.expect(VHDS)
    assert stale in vhds.removed_resources


async def test_a_cluster_leaves_only_after_the_routes_that_used_it(plane: Plane) -> None:
    """Make before break: the routes that stop sending to a cluster go out before the
    cluster's removal, or the old route sends requests to nothing (500) meanwhile."""
    envoy, _ = await _connected(plane)
    await envoy.delta_request(VHDS, [ASK_API])
    await envoy.ack(await envoy.expect(CDS))
    await envoy.delta_request(EDS, [API])
    await envoy.ack(await envoy.expect(EDS))
    await envoy.ack(await envoy.expect(VHDS))

    gone = MeshState(
        2,
        plane.state.mesh,
        {k: v for k, v in plane.state.services.items() if k[0] != "api"},
        {k: v for k, v in plane.state.workloads.items() if v.service != "api"},
        plane.state.gateways,
        plane.state.policies,
    ).reuse_unchanged(plane.state)
    plane.publisher.update_state(gone)
    pushed = await envoy.drain()
    order = [(r.type_url, name) for r in pushed for name in r.removed_resources]
    cluster_removed = order.index((CDS.url, API))
    assert order.index((EDS.url, API)) > cluster_removed
    assert any(url == VHDS.url for url, _ in order[:cluster_removed]), order
