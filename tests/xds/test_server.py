"""The ADS server over a real gRPC socket, with a client that plays Envoy.

Every part is real: a ``grpc.aio`` server on 127.0.0.1 serving ``AdsServer``, a
``SnapshotCache``, a ``StatusBoard`` as callbacks and a ``Publisher`` wired as in
``controlplane.py``. The client writes requests on a real channel and a background
task collects responses, so a test can also check that nothing arrives (cancelling a
pending ``call.read()`` would cancel the whole RPC). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2
from google.rpc import status_pb2

from sidemesh.envoy import ProxyId, ResourceType, Translator
from sidemesh.model import MeshState, ServiceKey, parse_mesh_document
from sidemesh.xds import AdsServer, Publisher, SnapshotCache, StatusBoard
from tests.conftest import MULTI_SERVICE_MESH

NODE = "sidecar~productpage-1~default"
PRODUCTPAGE = ProxyId("productpage-1", "default")

CDS = ResourceType.CLUSTER
EDS = ResourceType.ENDPOINT
LDS = ResourceType.LISTENER
RDS = ResourceType.ROUTE

RATINGS = "outbound|50051||ratings.default"
REVIEWS_HTTP = "outbound|9080||reviews.default"
REVIEWS_GRPC = "outbound|9090||reviews.default"
DB = "outbound|5432||db.default"
ROUTE_CONFIG = "outbound-http"

TIMEOUT = 5.0
"""Longest wait for something that should happen."""
QUIET = 0.3
"""How long we listen to be sure that nothing is sent."""

Response = discovery_pb2.DiscoveryResponse | discovery_pb2.DeltaDiscoveryResponse


class _End:
    """Queue item: the response stream ended."""


END = _End()


class Envoy:
    """One ADS stream, driven the way Envoy drives it. ``node_id`` goes on the
    first request only (Envoy's ``set_node_on_first_message_only``)."""

    def __init__(self, channel: grpc.aio.Channel, *, delta: bool, node_id: str = NODE) -> None:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        self.delta = delta
        self.call = stub.DeltaAggregatedResources() if delta else stub.StreamAggregatedResources()
        self.node_id = node_id
        self.error: grpc.aio.AioRpcError | None = None
        self._first = True
        self._responses: asyncio.Queue[Any] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                response = await self.call.read()
                if response is grpc.aio.EOF:
                    return
                self._responses.put_nowait(response)
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self._responses.put_nowait(END)

    # requests

    async def send(self, request: Any) -> None:
        if self._first and self.node_id:
            request.node.id = self.node_id
        self._first = False
        await asyncio.wait_for(self.call.write(request), TIMEOUT)

    async def request(
        self,
        rtype: ResourceType,
        names: Iterable[str] = (),
        *,
        nonce: str = "",
        version: str = "",
        error: str = "",
    ) -> None:
        """State of the world: ask for ``names`` (all, when empty, for CDS/LDS)."""
        assert not self.delta
        request = discovery_pb2.DiscoveryRequest(
            type_url=rtype.url,
            resource_names=list(names),
            response_nonce=nonce,
            version_info=version,
        )
        if error:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self.send(request)

    async def delta_request(
        self,
        rtype: ResourceType,
        subscribe: Iterable[str] = (),
        *,
        unsubscribe: Iterable[str] = (),
        nonce: str = "",
        error: str = "",
        initial: Mapping[str, str] | None = None,
    ) -> None:
        assert self.delta
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=rtype.url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            response_nonce=nonce,
            initial_resource_versions=dict(initial or {}),
        )
        if error:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self.send(request)

    async def ack(self, response: Response, names: Iterable[str] = ()) -> None:
        """Accept ``response``. SotW repeats its subscription (``names``)."""
        if self.delta:
            await self.delta_request(ResourceType(response.type_url), nonce=response.nonce)
        else:
            await self.request(
                ResourceType(response.type_url),
                names,
                nonce=response.nonce,
                version=response.version_info,
            )

    async def nack(
        self, response: Response, message: str, names: Iterable[str] = (), accepted: str = ""
    ) -> None:
        """Reject ``response``; SotW reports ``accepted``, the last version it took."""
        if self.delta:
            await self.delta_request(
                ResourceType(response.type_url), nonce=response.nonce, error=message
            )
        else:
            await self.request(
                ResourceType(response.type_url),
                names,
                nonce=response.nonce,
                version=accepted,
                error=message,
            )

    # responses

    async def expect(self, rtype: ResourceType | None = None, timeout: float = TIMEOUT) -> Any:
        """The next response (of ``rtype``, if given)."""
        try:
            item = await asyncio.wait_for(self._responses.get(), timeout)
        except TimeoutError:
            raise AssertionError(f"no response within {timeout}s") from None
        if item is END:
            self._responses.put_nowait(END)
            raise AssertionError(f"the stream ended: {self.error}")
        if rtype is not None:
            assert item.type_url == rtype.url, f"expected {rtype.short}, got {item.type_url}"
        return item

    async def expect_nothing(self, window: float = QUIET) -> None:
        got = await self.drain(window)
        assert not got, f"unexpected responses: {[describe(r) for r in got]}"

    async def drain(self, window: float = QUIET) -> list[Any]:
        """Every response that arrives within ``window``."""
        got: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        while (left := deadline - loop.time()) > 0:
            try:
                item = await asyncio.wait_for(self._responses.get(), left)
            except TimeoutError:
                break
            if item is END:
                self._responses.put_nowait(END)
                break
            got.append(item)
        return got

    async def ended(self) -> grpc.aio.AioRpcError | None:
        """Wait for the server to end the stream; its error, if any."""
        await asyncio.wait_for(asyncio.shield(self._reader), TIMEOUT)
        return self.error

    async def close(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self._reader, TIMEOUT)


@dataclass
class Plane:
    state: MeshState
    cache: SnapshotCache
    status: StatusBoard
    publisher: Publisher
    channel: grpc.aio.Channel
    clients: list[Envoy] = field(default_factory=list)

    def envoy(self, *, delta: bool, node_id: str = NODE) -> Envoy:
        client = Envoy(self.channel, delta=delta, node_id=node_id)
        self.clients.append(client)
        return client


@contextlib.asynccontextmanager
async def serving(state: MeshState, *, on_demand: bool) -> AsyncIterator[Plane]:
    """The control plane's xDS pieces wired as controlplane.py wires them, on a real
    gRPC server on 127.0.0.1; every client a test opens is closed after it."""
    cache = SnapshotCache()
    status = StatusBoard()
    publisher = Publisher(cache, state, on_demand=on_demand)
    ads = AdsServer(
        cache,
        status,
        on_connect=publisher.proxy_connected,
        on_disconnect=publisher.proxy_disconnected,
        on_demand=publisher.hosts_asked,
    )
    server = grpc.aio.server()
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(ads, server)
    port = server.add_insecure_port("127.0.0.1:0")
    assert port != 0
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    plane = Plane(state, cache, status, publisher, channel)
    try:
        yield plane
    finally:
        for client in plane.clients:
            await client.close()
        await channel.close()
        await server.stop(grace=None)


@pytest.fixture
async def plane(multi_service_state: MeshState) -> AsyncIterator[Plane]:
    # The protocol as such: every proxy is sent the whole mesh (on demand has its own
    # tests, in test_on_demand.py).
    async with serving(multi_service_state, on_demand=False) as made:
        yield made


# helpers


def describe(response: Response) -> str:
    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        names = [r.name for r in response.resources]
        return f"{response.type_url} {names} removed={list(response.removed_resources)}"
    return f"{response.type_url} ({len(response.resources)} resources)"


def unpack(body: any_pb2.Any, rtype: ResourceType) -> Any:
    message = {
        CDS: cluster_pb2.Cluster,
        EDS: endpoint_pb2.ClusterLoadAssignment,
    }[rtype]()
    assert body.Unpack(message), f"{body.type_url} is not a {rtype.url}"
    return message


def sotw_clusters(response: discovery_pb2.DiscoveryResponse) -> dict[str, cluster_pb2.Cluster]:
    clusters = [unpack(body, CDS) for body in response.resources]
    return {c.name: c for c in clusters}


def sotw_assignments(
    response: discovery_pb2.DiscoveryResponse,
) -> dict[str, endpoint_pb2.ClusterLoadAssignment]:
    assignments = [unpack(body, EDS) for body in response.resources]
    return {a.cluster_name: a for a in assignments}


def delta_resources(response: discovery_pb2.DeltaDiscoveryResponse) -> dict[str, Any]:
    """Resources by name; checks that each name is its message's own name."""
    rtype = ResourceType(response.type_url)
    out = {}
    for res in response.resources:
        message = unpack(res.resource, rtype)
        own = message.name if rtype is CDS else message.cluster_name
        assert res.name == own
        assert res.version
        out[res.name] = message
    return out


def ports(assignment: endpoint_pb2.ClusterLoadAssignment) -> list[int]:
    return [
        lb.endpoint.address.socket_address.port_value
        for group in assignment.endpoints
        for lb in group.lb_endpoints
    ]


def hostnames(assignment: endpoint_pb2.ClusterLoadAssignment) -> list[str]:
    return [lb.endpoint.hostname for group in assignment.endpoints for lb in group.lb_endpoints]


def expected_names(state: MeshState, rtype: ResourceType) -> set[str]:
    """What productpage-1 should have, from a translator of its own."""
    return set(Translator().for_proxy(state, PRODUCTPAGE)[rtype])


def outbound(names: Iterable[str]) -> list[str]:
    return sorted(n for n in names if n.startswith("outbound|"))


async def eventually(check: Callable[[], bool], what: str) -> None:
    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def endpoint_port_changed(old: MeshState) -> MeshState:
    """ratings-1 moves from port 21021 to 21029; everything else stays the same objects."""
    text = MULTI_SERVICE_MESH.replace("port: 21021", "port: 21029")
    return parse_mesh_document(text, "mesh.yaml", 2).reuse_unchanged(old)


def without_workload(old: MeshState, name: str) -> MeshState:
    workloads = {k: w for k, w in old.workloads.items() if k != (name, "default")}
    return MeshState(old.version + 1, old.mesh, old.services, workloads)


def without_service(old: MeshState, service: str) -> MeshState:
    key = ServiceKey(service, "default")
    services = {k: s for k, s in old.services.items() if k != key}
    workloads = {
        k: w.model_copy(update={"upstreams": tuple(u for u in w.upstreams if u.service != service)})
        if any(u.service == service for u in w.upstreams)
        else w
        for k, w in old.workloads.items()
        if (w.service, w.namespace) != (service, "default")
    }
    return MeshState(old.version + 1, old.mesh, services, workloads, old.gateways)


async def sotw_subscribe_all(envoy: Envoy) -> dict[ResourceType, discovery_pb2.DiscoveryResponse]:
    """CDS and LDS wildcard, EDS for every outbound cluster, RDS by name; each ACKed."""
    got = {}
    await envoy.request(CDS)
    got[CDS] = await envoy.expect(CDS)
    await envoy.ack(got[CDS])
    eds_names = outbound(sotw_clusters(got[CDS]))
    await envoy.request(EDS, eds_names)
    got[EDS] = await envoy.expect(EDS)
    await envoy.ack(got[EDS], eds_names)
    await envoy.request(LDS)
    got[LDS] = await envoy.expect(LDS)
    await envoy.ack(got[LDS])
    await envoy.request(RDS, [ROUTE_CONFIG])
    got[RDS] = await envoy.expect(RDS)
    await envoy.ack(got[RDS], [ROUTE_CONFIG])
    await envoy.expect_nothing()
    return got


async def delta_subscribe_all(
    envoy: Envoy,
) -> dict[ResourceType, discovery_pb2.DeltaDiscoveryResponse]:
    """As ``sotw_subscribe_all``, over delta."""
    got = {}
    await envoy.delta_request(CDS)
    got[CDS] = await envoy.expect(CDS)
    await envoy.ack(got[CDS])
    await envoy.delta_request(EDS, outbound(delta_resources(got[CDS])))
    got[EDS] = await envoy.expect(EDS)
    await envoy.ack(got[EDS])
    await envoy.delta_request(LDS)
    got[LDS] = await envoy.expect(LDS)
    await envoy.ack(got[LDS])
    await envoy.delta_request(RDS, [ROUTE_CONFIG])
    got[RDS] = await envoy.expect(RDS)
    await envoy.ack(got[RDS])
    await envoy.expect_nothing()
    return got


# state of the world


async def test_sotw_wildcard_cds_and_eds_by_name(plane: Plane) -> None:
    envoy = plane.envoy(delta=False)
    await envoy.request(CDS)
    cds = await envoy.expect(CDS)
    assert cds.nonce and cds.version_info
    clusters = sotw_clusters(cds)
    assert set(clusters) == expected_names(plane.state, CDS)
    assert clusters[RATINGS].type == cluster_pb2.Cluster.EDS
    assert "inbound|9080|productpage" in clusters

    await envoy.request(EDS, [RATINGS, REVIEWS_HTTP])
    eds = await envoy.expect(EDS)
    assert eds.nonce and eds.nonce != cds.nonce
    assert eds.version_info
    assignments = sotw_assignments(eds)
    assert set(assignments) == {RATINGS, REVIEWS_HTTP}
    assert ports(assignments[RATINGS]) == [21021]
    assert sorted(hostnames(assignments[REVIEWS_HTTP])) == ["reviews-v1", "reviews-v2"]

    status = plane.status.proxies[NODE]
    assert status.mode == "sotw"
    assert status.connected
    assert status.types[CDS].sent_version == cds.version_info
    assert status.types[EDS].sent_version == eds.version_info


async def test_sotw_ack_is_recorded_and_answered_with_silence(plane: Plane) -> None:
    envoy = plane.envoy(delta=False)
    await envoy.request(CDS)
    cds = await envoy.expect(CDS)
    await envoy.ack(cds)
    status = plane.status.proxies[NODE]
    await eventually(lambda: status.types[CDS].acked_version == cds.version_info, "the ACK")
    assert status.types[CDS].sent_version == status.types[CDS].acked_version
    assert status.types[CDS].acked_state_version == plane.state.version
    assert status.types[CDS].nacks == 0
    await envoy.expect_nothing()

    await envoy.request(EDS, [RATINGS])
    eds = await envoy.expect(EDS)
    await envoy.ack(eds, [RATINGS])
    await eventually(lambda: status.types[EDS].acked_version == eds.version_info, "the EDS ACK")
    assert status.synced
    await envoy.expect_nothing()


async def test_sotw_nack_is_recorded_and_not_answered_with_the_same_content(
    plane: Plane,
) -> None:
    envoy = plane.envoy(delta=False)
    await envoy.request(CDS)
    cds = await envoy.expect(CDS)
    await envoy.nack(cds, "cluster outbound|50051||ratings.default: bad cluster")
    status = plane.status.proxies[NODE]
    await eventually(lambda: status.types[CDS].nacks == 1, "the NACK")
    nack = status.types[CDS].last_nack
    assert nack is not None
    assert nack.detail == "cluster outbound|50051||ratings.default: bad cluster"
    assert nack.version == cds.version_info
    assert status.types[CDS].acked_version == ""
    assert plane.status.nacks_total == 1
    await envoy.expect_nothing()


async def test_sotw_stale_nonce_is_ignored(plane: Plane) -> None:
    envoy = plane.envoy(delta=False)
    await envoy.request(EDS, [RATINGS])
    first = await envoy.expect(EDS)
    # ACK the first response and widen the subscription: a second response follows.
    await envoy.request(EDS, [RATINGS, REVIEWS_HTTP], nonce=first.nonce, version=first.version_info)
    second = await envoy.expect(EDS)
    assert set(sotw_assignments(second)) == {RATINGS, REVIEWS_HTTP}

    # A request answering the first response again is stale: no NACK, no response.
    await envoy.request(EDS, [DB], nonce=first.nonce, error="stale complaint")
    await envoy.expect_nothing()
    # The stream goes on with the latest nonce.
    await envoy.ack(second, [RATINGS, REVIEWS_HTTP])
    status = plane.status.proxies[NODE].types[EDS]
    await eventually(lambda: status.acked_version == second.version_info, "the ACK")
    assert status.nacks == 0
    await envoy.expect_nothing()


async def test_sotw_endpoint_change_sends_new_eds_only(
    plane: Plane, multi_service_state: MeshState
) -> None:
    envoy = plane.envoy(delta=False)
    before = await sotw_subscribe_all(envoy)
    plane.publisher.update_state(endpoint_port_changed(multi_service_state))

    eds = await envoy.expect(EDS)
    assert eds.version_info != before[EDS].version_info
    assignments = sotw_assignments(eds)
    # Endpoints are a named subscription: even state of the world need only send
    # what changed (Envoy keeps the assignments a response leaves out).
    assert set(assignments) == {RATINGS}
    assert ports(assignments[RATINGS]) == [21029]
    await envoy.expect_nothing()

    await envoy.ack(eds, outbound(sotw_assignments(before[EDS])))
    status = plane.status.proxies[NODE]
    await eventually(lambda: status.types[EDS].acked_state_version == 2, "the ACK")
    assert status.state_version == 2
    assert status.synced


# delta


async def test_delta_wildcard_cds_and_eds_by_name(plane: Plane) -> None:
    envoy = plane.envoy(delta=True)
    await envoy.delta_request(CDS)
    cds = await envoy.expect(CDS)
    assert cds.nonce and cds.system_version_info
    assert not cds.removed_resources
    clusters = delta_resources(cds)
    assert set(clusters) == expected_names(plane.state, CDS)

    await envoy.delta_request(EDS, [RATINGS, REVIEWS_HTTP])
    eds = await envoy.expect(EDS)
    assert eds.nonce and eds.nonce != cds.nonce
    assert not eds.removed_resources
    assignments = delta_resources(eds)
    assert set(assignments) == {RATINGS, REVIEWS_HTTP}
    assert ports(assignments[RATINGS]) == [21021]

    status = plane.status.proxies[NODE]
    assert status.mode == "delta"
    assert status.types[CDS].sent_version == cds.system_version_info
    assert status.types[EDS].sent_version == eds.system_version_info


async def test_delta_ack_is_recorded_and_answered_with_silence(plane: Plane) -> None:
    envoy = plane.envoy(delta=True)
    await envoy.delta_request(CDS)
    cds = await envoy.expect(CDS)
    await envoy.ack(cds)
    status = plane.status.proxies[NODE]
    await eventually(lambda: status.types[CDS].acked_version == cds.system_version_info, "ACK")
    assert status.types[CDS].sent_version == status.types[CDS].acked_version
    assert status.types[CDS].nacks == 0
    await envoy.expect_nothing()


async def test_delta_nack_is_recorded_and_not_answered_with_the_same_content(
    plane: Plane,
) -> None:
    envoy = plane.envoy(delta=True)
    await envoy.delta_request(CDS)
    await envoy.ack(await envoy.expect(CDS))
    await envoy.delta_request(EDS, [RATINGS])
    eds = await envoy.expect(EDS)
    await envoy.nack(eds, "endpoint outbound|50051||ratings.default: bad address")
    status = plane.status.proxies[NODE]
    await eventually(lambda: status.types[EDS].nacks == 1, "the NACK")
    nack = status.types[EDS].last_nack
    assert nack is not None
    assert nack.detail == "endpoint outbound|50051||ratings.default: bad address"
    assert nack.version == eds.system_version_info
    assert status.types[EDS].acked_version == ""
    await envoy.expect_nothing()


async def test_delta_stale_nonce_is_ignored(plane: Plane) -> None:
    envoy = plane.envoy(delta=True)
    await envoy.delta_request(EDS, [RATINGS])
    first = await envoy.expect(EDS)
    await envoy.delta_request(EDS, [REVIEWS_HTTP], nonce=first.nonce)  # ACK + subscribe
    second = await envoy.expect(EDS)
    assert set(delta_resources(second)) == {REVIEWS_HTTP}

    await envoy.delta_request(EDS, nonce=first.nonce, error="stale complaint")
    await envoy.expect_nothing()
    await envoy.ack(second)
    status = plane.status.proxies[NODE].types[EDS]
    await eventually(lambda: status.acked_version == second.system_version_info, "the ACK")
    assert status.nacks == 0
    await envoy.expect_nothing()


async def test_delta_subscription_on_a_stale_nonce_is_honored(plane: Plane) -> None:
    envoy = plane.envoy(delta=True)
    await envoy.delta_request(EDS, [RATINGS])
    first = await envoy.expect(EDS)
    await envoy.delta_request(EDS, [REVIEWS_HTTP])  # spontaneous: no nonce
    await envoy.expect(EDS)
    # Envoy ACKs the first response late, and its pending subscription rides along.
    await envoy.delta_request(EDS, [DB], nonce=first.nonce)
    third = await envoy.expect(EDS, timeout=2.0)
    assert set(delta_resources(third)) == {DB}


async def test_delta_endpoint_change_sends_exactly_one_assignment(
    plane: Plane, multi_service_state: MeshState
) -> None:
    envoy = plane.envoy(delta=True)
    before = await delta_subscribe_all(envoy)
    assert RATINGS in delta_resources(before[EDS])
    plane.publisher.update_state(endpoint_port_changed(multi_service_state))

    eds = await envoy.expect(EDS)
    assert not eds.removed_resources
    assignments = delta_resources(eds)
    assert list(assignments) == [RATINGS]
    assert ports(assignments[RATINGS]) == [21029]
    had = {r.name: r.version for r in before[EDS].resources}
    assert eds.resources[0].version != had[RATINGS]
    # Nothing for clusters, listeners or routes.
    await envoy.expect_nothing()

    await envoy.ack(eds)
    status = plane.status.proxies[NODE]
    await eventually(lambda: status.types[EDS].acked_state_version == 2, "the ACK")
    assert status.types[CDS].sent_state_version == 1
    assert status.synced


async def test_delta_removed_workload_shrinks_the_endpoint_list(
    plane: Plane, multi_service_state: MeshState
) -> None:
    envoy = plane.envoy(delta=True)
    before = delta_resources((await delta_subscribe_all(envoy))[EDS])
    assert sorted(hostnames(before[REVIEWS_HTTP])) == ["reviews-v1", "reviews-v2"]

    plane.publisher.update_state(without_workload(multi_service_state, "reviews-v2"))
    eds = await envoy.expect(EDS)
    assert not eds.removed_resources
    assignments = delta_resources(eds)
    assert set(assignments) == {REVIEWS_HTTP, REVIEWS_GRPC}
    assert hostnames(assignments[REVIEWS_HTTP]) == ["reviews-v1"]
    assert hostnames(assignments[REVIEWS_GRPC]) == ["reviews-v1"]
    await envoy.expect_nothing()


async def test_delta_removed_service_removes_its_cluster(
    plane: Plane, multi_service_state: MeshState
) -> None:
    envoy = plane.envoy(delta=True)
    before = await delta_subscribe_all(envoy)
    assert DB in delta_resources(before[CDS])

    plane.publisher.update_state(without_service(multi_service_state, "db"))
    pushed = await envoy.drain()
    # Removals come last, after the listeners and routes that stop using db.
    assert [r.type_url for r in pushed][-2:] == [CDS.url, EDS.url]
    cds, eds = pushed[-2:]
    assert list(cds.removed_resources) == [DB]
    assert not cds.resources
    # Envoy subscribed to db's endpoints by name: it is told they are gone too.
    assert list(eds.removed_resources) == [DB] and not eds.resources
    assert all(r.type_url not in (CDS.url, EDS.url) for r in pushed[:-2])


async def test_delta_reconnect_with_current_cluster_versions_gets_nothing_new(
    plane: Plane,
) -> None:
    first = plane.envoy(delta=True)
    await first.delta_request(CDS)
    cds = await first.expect(CDS)
    await first.ack(cds)
    had = {r.name: r.version for r in cds.resources}
    await first.close()

    again = plane.envoy(delta=True)
    await again.delta_request(CDS, initial=had)
    got = await again.drain()
    assert [r.name for response in got for r in response.resources] == []
    assert [n for response in got for n in response.removed_resources] == []


async def test_delta_reconnect_with_current_endpoint_versions_gets_nothing_new(
    plane: Plane,
) -> None:
    first = plane.envoy(delta=True)
    await first.delta_request(EDS, [RATINGS, REVIEWS_HTTP])
    eds = await first.expect(EDS)
    await first.ack(eds)
    had = {r.name: r.version for r in eds.resources}
    assert set(had) == {RATINGS, REVIEWS_HTTP}
    await first.close()

    # After a reconnect Envoy subscribes again and says which versions it holds.
    again = plane.envoy(delta=True)
    await again.delta_request(EDS, [RATINGS, REVIEWS_HTTP], initial=had)
    got = await again.drain()
    assert [r.name for response in got for r in response.resources] == []


# either variant


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
@pytest.mark.parametrize(
    "node_id",
    ["productpage-1", "sidecar~productpage-1", "router~productpage-1~default"],
    ids=["bare-name", "two-parts", "not-a-sidecar"],
)
async def test_malformed_node_id_gets_an_open_silent_stream(
    plane: Plane, delta: bool, node_id: str
) -> None:
    envoy = plane.envoy(delta=delta, node_id=node_id)
    await (envoy.delta_request(CDS) if delta else envoy.request(CDS))
    await envoy.expect_nothing(window=0.5)
    assert not envoy.call.done()
    assert plane.status.proxies[node_id].connected
    assert plane.cache.get(node_id) is None


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_unknown_workload_gets_an_open_silent_stream(plane: Plane, delta: bool) -> None:
    node_id = "sidecar~nosuch-1~default"
    envoy = plane.envoy(delta=delta, node_id=node_id)
    await (envoy.delta_request(CDS) if delta else envoy.request(CDS))
    await envoy.expect_nothing(window=0.5)
    assert not envoy.call.done()
    assert plane.status.proxies[node_id].connected
    assert plane.cache.get(node_id) is None


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_first_request_without_node_id_is_invalid(plane: Plane, delta: bool) -> None:
    envoy = plane.envoy(delta=delta, node_id="")
    await (envoy.delta_request(CDS) if delta else envoy.request(CDS))
    error = await envoy.ended()
    assert error is not None
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "node.id" in (error.details() or "")
    assert plane.status.proxies == {}


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_disconnect_forgets_the_proxy(plane: Plane, delta: bool) -> None:
    envoy = plane.envoy(delta=delta)
    await (envoy.delta_request(CDS) if delta else envoy.request(CDS))
    await envoy.expect(CDS)
    assert plane.cache.get(NODE) is not None
    await envoy.close()
    status = plane.status.proxies[NODE]
    await eventually(lambda: not status.connected, "the disconnect")
    assert plane.cache.get(NODE) is None
    assert plane.cache.watched_nodes() == []
