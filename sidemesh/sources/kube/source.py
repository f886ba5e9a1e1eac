"""Kubernetes as a source: Services, meshed Pods and policy objects, kept current by
watches, reported to the aggregator as the same ``MeshState`` mesh.yaml gives.

A malformed object (a CRD object the model refuses, a Service port it cannot use, a
route to a service that does not exist) is reported on that object, as a Kubernetes
Event and in the log, and left out; the rest of the cluster still makes a snapshot.
Only a problem no object can be blamed for refuses the snapshot (the mesh then keeps
its last good one).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from sidemesh.errors import ConfigError, Problem
from sidemesh.model import parse_documents
from sidemesh.sources.aggregate import Feed
from sidemesh.sources.kube import smi
from sidemesh.sources.kube.client import KubeApi, KubeApiError
from sidemesh.sources.kube.convert import (
    CONVERTED_FROM,
    ObjectRef,
    is_policy,
    services_running_as,
    to_documents,
)
from sidemesh.sources.kube.informer import Informer, Resource
from sidemesh.sources.leave_out import parse_leaving_out
from sidemesh.sources.protocol import Snapshot

log = logging.getLogger(__name__)

SOURCE_NAME = "Kubernetes"
SERVICES = Resource("Service", "v1", "services")
PODS = Resource("Pod", "v1", "pods")
POLICIES = (
    Resource("HTTPRoute", "gateway.networking.k8s.io/v1", "httproutes"),
    Resource("GRPCRoute", "gateway.networking.k8s.io/v1", "grpcroutes"),
    Resource("Gateway", "gateway.networking.k8s.io/v1", "gateways"),
    Resource("BackendPolicy", "sidemesh.io/v1alpha1", "backendpolicies"),
    Resource("FaultInjection", "sidemesh.io/v1alpha1", "faultinjections"),
    Resource("ExternalService", "sidemesh.io/v1alpha1", "externalservices"),
    Resource("AuthorizationPolicy", "sidemesh.io/v1alpha1", "authorizationpolicies"),
    Resource("RequestAuthentication", "sidemesh.io/v1alpha1", "requestauthentications"),
    Resource("Telemetry", "sidemesh.io/v1alpha1", "telemetries"),
)
SMI = (
    Resource("TrafficSplit", "split.smi-spec.io/v1alpha4", "trafficsplits"),
    Resource("TrafficTarget", "access.smi-spec.io/v1alpha3", "traffictargets"),
    Resource("HTTPRouteGroup", "specs.smi-spec.io/v1alpha4", "httproutegroups"),
)
SMI_ARCHIVED = (
    "%s: SMI is archived; sidemesh serves it as the Gateway API and sidemesh documents "
    "below (apply them instead, then delete the SMI object):\n%s"
)
SYNC_TIMEOUT_S = 60.0
SETTLE_S = 0.05
"""Changes that arrive together (a rollout's pods) make one snapshot, not one each."""


class KubeSource:
    """The ``Source`` of a cluster. ``mesh``: mesh settings (mesh.yaml's ``mesh:``),
    which no Kubernetes object holds."""

    def __init__(
        self,
        api: KubeApi,
        feed: Feed,
        mesh: Mapping[str, Any] | None = None,
        settle_s: float = SETTLE_S,
    ) -> None:
        self.api = api
        self.feed = feed
        self.mesh = dict(mesh or {})
        self.settle_s = settle_s
        self._changed = asyncio.Event()
        self.informers = [
            Informer(api, r, self._changed.set) for r in (SERVICES, PODS, *POLICIES, *SMI)
        ]
        self._smi_said: dict[str, str] = {}
        """What was logged for each SMI object: said again only when it changes."""
        self.bad_objects: dict[ObjectRef, tuple[str, ...]] = {}
        """Objects left out of the latest snapshot, with why."""
        self._reported: dict[ObjectRef, tuple[str, ...]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def load_initial(self) -> Snapshot:
        """List everything (raises ``ConfigError`` if the API does not answer in time)."""
        self._tasks = [asyncio.create_task(i.run()) for i in self.informers]
        try:
            await asyncio.wait_for(
                asyncio.gather(*(i.synced.wait() for i in self.informers)), SYNC_TIMEOUT_S
            )
        except TimeoutError:
            missing = ", ".join(i.resource.kind for i in self.informers if not i.synced.is_set())
            await self.stop()
            raise ConfigError(
                SOURCE_NAME,
                [Problem("", f"could not list {missing} within {SYNC_TIMEOUT_S:.0f} s")],
            ) from None
        self._changed.clear()
        snapshot = self.build()
        if snapshot is None:
            await self.stop()
            assert self.feed.last_error is not None
            raise self.feed.last_error
        return snapshot

    async def watch(self) -> None:
        try:
            while True:
                await self._changed.wait()
                await asyncio.sleep(self.settle_s)
                self._changed.clear()
                self.build()
        finally:
            await self.stop()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def build(self) -> Snapshot | None:
        """Report a snapshot of what the informers hold, leaving out bad objects."""
        services = self._objects(SERVICES)
        pods = self._objects(PODS)
        policies = self._policies(services, pods)
        outcome = parse_leaving_out(
            lambda skip: to_documents(self.mesh, services, pods, policies, skip=skip), SOURCE_NAME
        )
        if outcome.state is None:
            assert outcome.refusal is not None
            self.feed.refuse(outcome.refusal)
            return None
        self._report(outcome.left_out)
        self.feed.offer(outcome.state)
        return outcome.state

    def problems_with(self, obj: Mapping[str, Any]) -> list[str]:
        """What the mesh would find wrong with ``obj`` (a policy object) if it were
        applied now, beside everything else the cluster holds: the validating webhook
        asks, so ``kubectl apply`` refuses what would otherwise be left out."""
        ref = ObjectRef.of(obj)
        services, pods = self._objects(SERVICES), self._objects(PODS)
        policies = [o for o in self._policies(services, pods) if ObjectRef.of(o) != ref]
        docs = to_documents(
            self.mesh,
            services,
            pods,
            [*policies, obj],
            skip=tuple(r for r in self.bad_objects if r != ref),
        )
        try:
            parse_documents(docs.first, docs.policies, SOURCE_NAME)
        except ConfigError as exc:
            return [str(p) for p in exc.problems if docs.object_of(p.path) == ref]
        return []

    def _policies(
        self, services: list[dict[str, Any]], pods: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The cluster's policy objects, SMI ones as their equivalents."""
        policies = [o for r in POLICIES for o in self._objects(r) if is_policy(o)]
        smi_objects = [o for r in SMI for o in self._objects(r)]
        if not smi_objects:
            return policies
        converted = smi.convert(
            smi_objects, lambda ns, sa: services_running_as(services, pods, ns, sa)
        )
        for warning in converted.warnings:
            log.warning("%s", warning)
        for doc in converted.documents:
            origin = doc["metadata"]["annotations"][CONVERTED_FROM]
            text = yaml.safe_dump(doc, sort_keys=False)
            if self._smi_said.get(origin) != text:
                self._smi_said[origin] = text
                log.warning(SMI_ARCHIVED, origin, text)
        return policies + converted.documents

    def _objects(self, resource: Resource) -> list[dict[str, Any]]:
        informer = next(i for i in self.informers if i.resource == resource)
        return list(informer.objects.values())

    def _report(self, bad: dict[ObjectRef, tuple[str, ...]]) -> None:
        self.bad_objects = bad
        for ref, reasons in bad.items():
            if self._reported.get(ref) == reasons:
                continue  # said already; the object has not changed since
            log.error("%s is left out of the mesh:\n  %s", ref, "\n  ".join(reasons))
            task = asyncio.get_running_loop().create_task(self._event(ref, reasons))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
        self._reported = dict(bad)

    async def _event(self, ref: ObjectRef, reasons: Sequence[str]) -> None:
        """A Warning Event on the object, so ``kubectl describe`` shows why."""
        namespace = ref.namespace or "default"
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{ref.name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "name": ref.name,
                "namespace": ref.namespace,
                "uid": ref.uid,
            },
            "reason": "InvalidConfiguration",
            "message": ("left out of the mesh: " + "; ".join(reasons))[:1024],
            "type": "Warning",
            "source": {"component": "sidemesh"},
            "reportingComponent": "sidemesh",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.api.post(f"/api/v1/namespaces/{namespace}/events", event)
        except (KubeApiError, OSError, TimeoutError) as exc:
            log.warning("could not record an Event on %s: %s", ref, exc)
