"""The ADS server: one gRPC stream per Envoy, state-of-the-world or delta.

Both variants follow the same loop: a stream waits for either a request from Envoy
or a change of its proxy's snapshot, and answers with what the proxy lacks, type by
type in ADS order. Nonces tie each request to the response it answers: a request
with an old nonce is stale and ignored; one with the latest nonce is an ACK, or a
NACK when it carries ``error_detail``. After a NACK the same content is not sent
again: the proxy keeps its last good config until the content changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from cryptography import x509
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from sidemesh.envoy import Resource, ResourceType
from sidemesh.envoy.outbound.demand import host_of, route_config_of
from sidemesh.envoy.proxy import ADMIN_SOCKET_METADATA
from sidemesh.envoy.resources import ADS_ORDER
from sidemesh.model.refs import SPIFFE_SCHEME
from sidemesh.xds.cache import SnapshotCache
from sidemesh.xds.snapshot import Snapshot, references
from sidemesh.xds.status import XdsCallbacks

log = logging.getLogger(__name__)

GRPC_SERVER_OPTIONS = [
    # gRPC cancels calls beyond 1,000 waiting to be picked up; a restarted control
    # plane with thousands of sidecars reconnecting at once would refuse some.
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 40_000),
]

WILDCARD = "*"
ABSENT = ""
"""Delta: the version we record for a name we told the proxy does not exist."""


class _Changed:
    """Queue item: this stream's snapshot was replaced."""


class _Closed:
    """Queue item: Envoy closed its side of the stream."""


CHANGED = _Changed()
CLOSED = _Closed()


class AdsServer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """Serves snapshots from ``cache``; reports to ``callbacks``. ``on_connect`` (with
    the stream's mode, ``sotw`` or ``delta``) and ``on_disconnect`` let the owner build
    snapshots only for proxies that are there; ``on_demand`` hands it the Hosts a delta
    proxy asks for (VHDS, ``outbound-http/<host>``), to answer in its next snapshot."""

    def __init__(
        self,
        cache: SnapshotCache,
        callbacks: XdsCallbacks,
        on_connect: Callable[[str, str], None] = lambda node, mode: None,
        on_disconnect: Callable[[str], None] = lambda node: None,
        authorize: Callable[[str, str | None], str | None] = lambda node, peer: None,
        on_demand: Callable[[str, set[str]], None] = lambda node, hosts: None,
    ) -> None:
        """``authorize(node_id, peer)``: None if the stream may ask for that node's
        config, else why not; ``peer`` is the SPIFFE ID of the client certificate, None
        on a plaintext (loopback) connection."""
        self.authorize = authorize
        self.cache = cache
        self.callbacks = callbacks
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.on_demand = on_demand

    async def StreamAggregatedResources(  # gRPC method name
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        async for response in _SotwStream(self, context).run(request_iterator):
            yield response

    async def DeltaAggregatedResources(  # gRPC method name
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        async for response in _DeltaStream(self, context).run(request_iterator):
            yield response


@dataclass
class _TypeState:
    """One resource type on one stream."""

    requested: bool = False
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    nonce: str = ""
    sent_version: str = ""
    # What the proxy has, by name: the version last sent (or reported on reconnect).
    sent: dict[str, str] = field(default_factory=dict)
    # Names to send again whatever the proxy reports having (endpoints of a cluster
    # that was just re-sent).
    must_resend: set[str] = field(default_factory=set)
    # The snapshot this type was last brought up to date with, under the current
    # subscription: from it, only what changed needs looking at.
    answered: Snapshot | None = None


class _Stream:
    mode = ""
    honors_stale_subscriptions = False
    """Delta requests carry subscription changes once only, so even one answering a
    superseded response must be applied; a SotW request restates its whole
    subscription, so a stale one can be dropped."""

    def __init__(self, server: AdsServer, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.server = server
        self.context = context
        self.node_id = ""
        self.types: dict[ResourceType, _TypeState] = {t: _TypeState() for t in ResourceType}
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self._nonce = 0
        self._cancel_watch: Callable[[], None] | None = None
        self._changed_queued = False
        self._vhosts_waiting = False
        """Some virtual host is held back until its clusters' endpoints are sent."""
        self._snapshot: Snapshot | None = None
        """The snapshot this stream answers from. Only a snapshot change moves it on,
        pushing every type in ADS order; a request in between (an ACK) is answered
        from it, so a new listener never goes out before the clusters it uses."""

    async def run(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        reader = asyncio.create_task(self._read(requests))
        try:
            while True:
                item = await self.queue.get()
                if item is CLOSED:
                    return
                if item is CHANGED:
                    self._changed_queued = False
                    responses = self._on_snapshot()
                else:
                    responses = await self._on_request(item)
                for response in responses:
                    yield response
        finally:
            reader.cancel()
            if self._cancel_watch is not None:
                self._cancel_watch()
            if self.node_id:
                self.server.callbacks.on_stream_closed(self.node_id)
                self.server.on_disconnect(self.node_id)

    async def _read(self, requests: AsyncIterator[Any]) -> None:
        try:
            async for request in requests:
                self.queue.put_nowait(request)
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            pass
        finally:
            self.queue.put_nowait(CLOSED)

    async def _on_request(self, request: Any) -> list[Any]:
        if not self.node_id:
            if not request.node.id:
                await self.context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, "the first request must carry node.id"
                )
            refusal = self.server.authorize(request.node.id, peer_spiffe_id(self.context))
            if refusal is not None:
                log.warning("refused an xDS stream: %s", refusal)
                await self.context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
            self.node_id = request.node.id
            admin = request.node.metadata.fields.get(ADMIN_SOCKET_METADATA)
            self.server.callbacks.on_stream_open(
                self.node_id, self.mode, admin.string_value if admin is not None else None
            )
            self._cancel_watch = self.server.cache.watch(self.node_id, self._notify)
            self.server.on_connect(self.node_id, self.mode)
        rtype = ResourceType.from_url(request.type_url)
        if rtype is None:
            log.warning("%s asked for unknown type %s; ignored", self.node_id, request.type_url)
            return []
        state = self.types[rtype]
        stale = bool(request.response_nonce) and request.response_nonce != state.nonce
        if stale and not self.honors_stale_subscriptions:
            return []  # answers a superseded response; the next request repeats it whole
        if request.response_nonce and not stale:
            if request.HasField("error_detail"):
                self.server.callbacks.on_nack(
                    self.node_id, rtype, state.sent_version, request.error_detail.message
                )
            else:
                self.server.callbacks.on_ack(self.node_id, rtype, state.sent_version)
        if self._subscribe(rtype, state, request):
            state.answered = None
        if self._snapshot is None:
            self._snapshot = self.server.cache.get(self.node_id)
        snapshot = self._snapshot
        if snapshot is None:
            return []
        if state.answered is snapshot:
            return []  # an ACK of what this snapshot holds: nothing new to say
        response = self._response(rtype, state, snapshot, None)
        state.answered = snapshot
        self.server.callbacks.on_snapshot(self.node_id, snapshot.state_version)
        responses = [response] if response is not None else []
        return responses + self._follow_ups(rtype, snapshot)

    def _follow_ups(self, rtype: ResourceType, snapshot: Snapshot) -> list[Any]:
        """What may go out once a response to ``rtype`` has (none by default)."""
        return []

    def _notify(self) -> None:
        if not self._changed_queued:  # one push covers any number of changes
            self._changed_queued = True
            self.queue.put_nowait(CHANGED)

    def _on_snapshot(self) -> list[Any]:
        snapshot = self.server.cache.get(self.node_id)
        if snapshot is None:
            return []
        self._snapshot = snapshot
        out = []
        for rtype in ADS_ORDER:
            state = self.types[rtype]
            if not state.requested:
                continue
            changed = (
                None
                if state.answered is None
                else self.server.cache.changed_names(state.answered, snapshot, rtype)
            )
            response = self._response(rtype, state, snapshot, changed)
            state.answered = snapshot
            if response is not None:
                out.append(response)
        self.server.callbacks.on_snapshot(self.node_id, snapshot.state_version)
        return out

    def _next_nonce(self) -> str:
        self._nonce += 1
        return str(self._nonce)

    def _wanted(self, state: _TypeState, snapshot: Snapshot, rtype: ResourceType) -> list[Resource]:
        resources = snapshot.resources[rtype]
        if state.wildcard:
            return list(resources.values())
        return [resources[n] for n in sorted(state.names) if n in resources]

    def _sent(
        self,
        rtype: ResourceType,
        state: _TypeState,
        snapshot: Snapshot,
        version: str,
        resources: list[Resource],
    ) -> str:
        nonce = self._next_nonce()
        state.nonce = nonce
        state.sent_version = version
        self.server.callbacks.on_sent(
            self.node_id, rtype, version, snapshot.state_version, len(resources)
        )
        if rtype is ResourceType.CLUSTER:
            # A changed cluster warms again and waits for its endpoints: resend them,
            # even if Envoy's first EDS request (after a reconnect) says it has them.
            endpoints = self.types[ResourceType.ENDPOINT]
            for res in resources:
                endpoints.sent.pop(res.name, None)
                endpoints.must_resend.add(res.name)
            if resources:
                endpoints.answered = None
        return nonce

    def _subscribe(self, rtype: ResourceType, state: _TypeState, request: Any) -> bool:
        """Apply the request's subscription; True if it changed what the proxy wants."""
        raise NotImplementedError

    def _response(
        self,
        rtype: ResourceType,
        state: _TypeState,
        snapshot: Snapshot,
        changed: set[str] | None,
    ) -> Any:
        """The response that brings the proxy up to ``snapshot``, or None. ``changed``:
        the names that differ from ``state.answered`` (None: look at everything)."""
        raise NotImplementedError


class _SotwStream(_Stream):
    """State of the world: each response holds every resource the proxy asked for."""

    mode = "sotw"

    def _subscribe(
        self, rtype: ResourceType, state: _TypeState, request: discovery_pb2.DiscoveryRequest
    ) -> bool:
        names = set(request.resource_names)
        wildcard = rtype.is_wildcard and (not names or WILDCARD in names)
        changed = wildcard != state.wildcard or names != state.names or not state.requested
        if changed:
            state.sent.clear()  # the subscription changed: answer it whole
        state.requested = True
        state.wildcard = wildcard
        state.names = names
        return changed

    def _response(
        self,
        rtype: ResourceType,
        state: _TypeState,
        snapshot: Snapshot,
        changed: set[str] | None,
    ) -> discovery_pb2.DiscoveryResponse | None:
        if changed is not None and not state.wildcard:
            # Endpoints and routes are named subscriptions: a response need only hold
            # what changed, and the proxy keeps the rest (listeners and clusters,
            # wildcard, must always come whole: what is missing is deleted).
            wanted = snapshot.resources[rtype]
            names = (changed | state.must_resend) & state.names
            resources = [wanted[n] for n in sorted(names) if n in wanted]
            resources = [r for r in resources if state.sent.get(r.name) != r.version]
            if not resources:
                return None
            state.sent.update((r.name, r.version) for r in resources)
            state.must_resend.difference_update(r.name for r in resources)
        else:
            if changed is not None and not changed and not state.must_resend:
                return None  # nothing of this type changed
            resources = self._wanted(state, snapshot, rtype)
            current = {r.name: r.version for r in resources}
            if state.nonce and current == state.sent:
                return None
            state.sent = current
            state.must_resend.clear()  # this response holds everything asked for
        version = snapshot.type_version(rtype)
        nonce = self._sent(rtype, state, snapshot, version, resources)
        return discovery_pb2.DiscoveryResponse(
            version_info=version,
            resources=[r.body for r in resources],
            type_url=rtype.url,
            nonce=nonce,
        )


_HELD_REMOVALS = (ResourceType.CLUSTER, ResourceType.ENDPOINT)


class _DeltaStream(_Stream):
    """Delta: each response holds only what changed, and the names removed."""

    mode = "delta"
    honors_stale_subscriptions = True

    def __init__(self, server: AdsServer, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        super().__init__(server, context)
        self._answered: dict[str, str] = {}
        """Each Host asked for on demand and answered, with the answer's version."""
        self._holding_removals = False
        """Within a push: clusters and endpoints gone from the snapshot stay on the
        proxy until the routes that stop using them went out (make before break)."""
        self._removals_held: set[ResourceType] = set()

    def _on_snapshot(self) -> list[Any]:
        # A route that stopped sending to a cluster reaches Envoy after the clusters
        # do (ADS order), so removing the cluster in the same pass would leave the old
        # route pointing at nothing for a moment: requests it sends there answer 500.
        self._holding_removals = True
        try:
            out = super()._on_snapshot()
        finally:
            self._holding_removals = False
        if self._snapshot is not None and not self._vhosts_waiting:
            out += self._removals(self._snapshot)
        return out

    def _follow_ups(self, rtype: ResourceType, snapshot: Snapshot) -> list[Any]:
        if not self._vhosts_waiting or rtype is ResourceType.VIRTUAL_HOST:
            return []
        # Endpoints just went out: the virtual hosts that waited for them may follow,
        # and after them the clusters no route uses any more.
        vhosts = self.types[ResourceType.VIRTUAL_HOST]
        more = self._response(ResourceType.VIRTUAL_HOST, vhosts, snapshot, None)
        out = [more] if more is not None else []
        if not self._vhosts_waiting:
            out += self._removals(snapshot)
        return out

    def _removals(self, snapshot: Snapshot) -> list[Any]:
        """The removals held back during a push, now that the routes went out."""
        out = []
        for rtype in _HELD_REMOVALS:
            if rtype in self._removals_held:
                self._removals_held.discard(rtype)
                response = self._response(rtype, self.types[rtype], snapshot, None)
                if response is not None:
                    out.append(response)
        return out

    def _subscribe(
        self,
        rtype: ResourceType,
        state: _TypeState,
        request: discovery_pb2.DeltaDiscoveryRequest,
    ) -> bool:
        subscribe = set(request.resource_names_subscribe)
        first = not state.requested
        changed = first or bool(subscribe - state.names) or bool(request.resource_names_unsubscribe)
        if first:
            state.requested = True
            # An empty first subscription to listeners or clusters means "all of them".
            state.wildcard = rtype.is_wildcard and not subscribe
        if WILDCARD in subscribe:
            state.wildcard = True
            subscribe.discard(WILDCARD)
        if WILDCARD in request.resource_names_unsubscribe:
            state.wildcard = False
        for name in subscribe - state.names:
            state.sent.pop(name, None)  # a new subscription gets the resource
        state.names |= subscribe
        for name in request.resource_names_unsubscribe:
            state.names.discard(name)
            state.sent.pop(name, None)
        if first:
            # After a reconnect Envoy says what it already has: don't send it again.
            state.sent.update(
                (name, version)
                for name, version in request.initial_resource_versions.items()
                if name not in state.must_resend
            )
        if rtype is ResourceType.VIRTUAL_HOST:
            asked = {name for name in subscribe if host_of(name) is not None}
            if first and not subscribe:
                # What Envoy's VHDS subscription starts with: every virtual host of the
                # route configurations it holds.
                state.wildcard = True
            if subscribe - asked and not first:
                # A route configuration subscribed anew on a live stream (its VHDS config
                # changed): it holds none of its virtual hosts, so every one goes out
                # again. (On a new stream, what Envoy says it holds stands, so what it
                # should no longer hold is removed.)
                state.sent.clear()
            if asked:
                for name in asked:  # asked anew: answered anew
                    self._answered.pop(name, None)
                self.server.on_demand(self.node_id, asked)
                changed = True
        return changed

    def _response(
        self,
        rtype: ResourceType,
        state: _TypeState,
        snapshot: Snapshot,
        changed: set[str] | None,
    ) -> discovery_pb2.DeltaDiscoveryResponse | None:
        if rtype is ResourceType.VIRTUAL_HOST:
            return self._virtual_hosts(state, snapshot)
        resources = snapshot.resources[rtype]
        if changed is None:
            names = set(resources if state.wildcard else state.names) | set(state.sent)
        else:
            names = changed | state.must_resend
        updated: list[Resource] = []
        removed: list[str] = []
        for name in sorted(names):
            if not (state.wildcard or name in state.names):
                continue
            res = resources.get(name)
            have = state.sent.get(name)
            if res is not None:
                if have != res.version:
                    updated.append(res)
            elif have not in (None, ABSENT) or (have is None and not state.wildcard):
                # Gone, or asked for by name but absent: say so once, or Envoy waits.
                if self._holding_removals and have is not None and rtype in _HELD_REMOVALS:
                    self._removals_held.add(rtype)
                    continue
                removed.append(name)
        first = not state.nonce
        if not updated and not removed and not first:
            return None
        for res in updated:
            state.sent[res.name] = res.version
            state.must_resend.discard(res.name)
        for name in removed:
            if name in state.names and not state.wildcard:
                state.sent[name] = ABSENT
            else:
                state.sent.pop(name, None)
        version = snapshot.type_version(rtype)
        nonce = self._sent(rtype, state, snapshot, version, updated)
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            resources=[
                discovery_pb2.Resource(name=r.name, version=r.version, resource=r.body)
                for r in updated
            ],
            removed_resources=removed,
            type_url=rtype.url,
            nonce=nonce,
        )

    def _virtual_hosts(
        self, state: _TypeState, snapshot: Snapshot
    ) -> discovery_pb2.DeltaDiscoveryResponse | None:
        """VHDS: the virtual hosts of the route configurations subscribed to, and an
        answer to each Host asked for on demand (the virtual host that serves it, named
        in ``aliases`` so Envoy resumes the waiting request, or an empty resource: no
        such host). Few per proxy (what it holds), so all are looked at each time. A
        virtual host goes out only once its clusters and their endpoints have: Envoy
        resumes the waiting request on it at once, and a cluster still warming would
        answer 503."""
        resources = snapshot.resources[ResourceType.VIRTUAL_HOST]
        answers = snapshot.resources.aliases
        namespaces = {n for n in state.names if host_of(n) is None}
        aliases_of: dict[str, list[str]] = {}
        not_found: list[str] = []
        for name in sorted(state.names - namespaces):
            if name in self._answered or name not in answers:
                continue  # answered, or not yet known to the snapshot (it will be)
            target = answers[name]
            if target is None or target not in resources:
                not_found.append(name)
            else:
                aliases_of.setdefault(target, []).append(name)
        updated: list[Resource] = []
        self._vhosts_waiting = False
        for name in sorted(resources):
            res = resources[name]
            wanted = state.wildcard or route_config_of(name) in namespaces or name in aliases_of
            if not wanted or (state.sent.get(name) == res.version and name not in aliases_of):
                continue
            if not self._clusters_sent(res, snapshot):
                self._vhosts_waiting = True
                continue
            updated.append(res)
        removed = [name for name in state.sent if name not in resources]
        if not updated and not removed and not not_found and state.nonce:
            return None  # (the first answer goes even empty: Envoy waits for it)
        for res in updated:
            state.sent[res.name] = res.version
            for asked in aliases_of.get(res.name, ()):
                self._answered[asked] = res.version
        for name in removed:
            state.sent.pop(name, None)
        for name in not_found:
            self._answered[name] = ABSENT
        version = snapshot.type_version(ResourceType.VIRTUAL_HOST)
        nonce = self._sent(ResourceType.VIRTUAL_HOST, state, snapshot, version, updated)
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            resources=[
                discovery_pb2.Resource(
                    name=r.name, version=r.version, resource=r.body, aliases=aliases_of.get(r.name)
                )
                for r in updated
            ]
            + [discovery_pb2.Resource(name=name, aliases=[name]) for name in not_found],
            removed_resources=removed,
            type_url=ResourceType.VIRTUAL_HOST.url,
            nonce=nonce,
        )

    def _clusters_sent(self, vhost: Resource, snapshot: Snapshot) -> bool:
        """Whether every cluster ``vhost`` routes to, and its endpoints, went out."""
        clusters = snapshot.resources[ResourceType.CLUSTER]
        sent_clusters = self.types[ResourceType.CLUSTER].sent
        sent_endpoints = self.types[ResourceType.ENDPOINT].sent
        for ref_type, name in references(vhost):
            cluster = clusters.get(name) if ref_type is ResourceType.CLUSTER else None
            if cluster is None:
                continue  # not the proxy's to wait for (the snapshot check names it)
            if sent_clusters.get(name) != cluster.version:
                return False
            for _, assignment in references(cluster):
                if sent_endpoints.get(assignment) in (None, ABSENT):
                    return False
        return True


def peer_spiffe_id(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The SPIFFE ID (URI SAN) of the client certificate a stream was opened with; None
    on a plaintext connection or a certificate without one."""
    pems = list(context.auth_context().get("x509_pem_cert") or [])
    if not pems:
        return None
    try:
        certificate = x509.load_pem_x509_certificate(pems[0])
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, x509.ExtensionNotFound):
        return None
    uris = [u for u in names.value.get_values_for_type(x509.UniformResourceIdentifier)]
    return next((u for u in uris if u.startswith(SPIFFE_SCHEME)), None)
