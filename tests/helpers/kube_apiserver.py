"""A small Kubernetes API server, written for the tests.

Why it exists: no real kube-apiserver can run on the machines these tests run on (no
container engine, no kube-apiserver package). So the Kubernetes source and the
TokenReview validator are tested against this server instead, through the real client
library (``kubernetes_asyncio``, configured from a real kubeconfig file, over HTTPS
with a bearer token). It speaks the parts of the real protocol sidemesh depends on,
with the real semantics:

- list (``GET /api/v1/pods``, ``/apis/<group>/<version>/<plural>``): items and the
  list's ``metadata.resourceVersion``; 404 for a kind it does not serve (a CRD not
  installed);
- watch (``?watch=true&resourceVersion=N``): newline-delimited JSON events after N
  (ADDED, MODIFIED, DELETED, BOOKMARK when ``allowWatchBookmarks``), ended after
  ``timeoutSeconds``; a version older than the last compaction gets the ERROR event
  with a ``410 Expired`` Status a real server sends;
- ``POST /api/v1/namespaces/<ns>/events``: kept for tests to read;
- ``POST /apis/authentication.k8s.io/v1/tokenreviews``: verifies the service-account
  JWTs ``token()`` signs (signature, expiry, audience) and answers as the real API
  does (``system:serviceaccount:<ns>:<sa>`` and the pod's name in ``extra``).

Tests change objects (``apply``, ``delete``), compact history (``compact``), cut
every open watch mid-stream (``drop_watches``) and send bookmarks (``bookmark``).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import jwt
import yaml
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.helpers.certs import server_certificate

SERVED = {
    "/api/v1/services": ("Service", "v1"),
    "/api/v1/pods": ("Pod", "v1"),
    "/api/v1/namespaces": ("Namespace", "v1"),
    "/apis/gateway.networking.k8s.io/v1/httproutes": ("HTTPRoute", "gateway.networking.k8s.io/v1"),
    "/apis/sidemesh.io/v1alpha1/authorizationpolicies": (
        "AuthorizationPolicy",
        "sidemesh.io/v1alpha1",
    ),
    "/apis/sidemesh.io/v1alpha1/backendpolicies": ("BackendPolicy", "sidemesh.io/v1alpha1"),
    "/apis/split.smi-spec.io/v1alpha4/trafficsplits": (
        "TrafficSplit",
        "split.smi-spec.io/v1alpha4",
    ),
    "/apis/access.smi-spec.io/v1alpha3/traffictargets": (
        "TrafficTarget",
        "access.smi-spec.io/v1alpha3",
    ),
    "/apis/specs.smi-spec.io/v1alpha4/httproutegroups": (
        "HTTPRouteGroup",
        "specs.smi-spec.io/v1alpha4",
    ),
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations": (
        "MutatingWebhookConfiguration",
        "admissionregistration.k8s.io/v1",
    ),
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations": (
        "ValidatingWebhookConfiguration",
        "admissionregistration.k8s.io/v1",
    ),
}
CLUSTER_SCOPED = {"Namespace", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
"""What this server serves; every other collection answers 404 (not installed)."""
ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass
class _Watch:
    collection: str
    queue: asyncio.Queue[dict[str, Any] | None]
    request: web.Request
    bookmarks: bool


@dataclass
class KubeTestServer:
    directory: Path
    bearer_token: str = field(default_factory=lambda: uuid.uuid4().hex)
    signing_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    history: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    revision: int = 100
    compacted: int = 0
    list_requests: int = 0
    configmaps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    applied: dict[str, Any] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)
    """``namespace/scheme:name:port`` → the URL the service proxy forwards to."""
    """Objects written by server-side apply, by their path."""
    watch_requests: list[str] = field(default_factory=list)
    """The resourceVersion each watch asked for, in order."""
    port: int = 0

    def __post_init__(self) -> None:
        self._watches: list[_Watch] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> KubeTestServer:
        cert = server_certificate(self.directory / "tls", "127.0.0.1")
        self.ca_path = cert.ca
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert.certificate, cert.key)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(context), self._loop).result(10)
        return self

    async def _serve(self, context: ssl.SSLContext) -> None:
        app = web.Application(middlewares=[self._authenticate])
        app.router.add_post("/api/v1/namespaces/{namespace}/events", self._post_event)
        app.router.add_get("/api/v1/namespaces/{namespace}/configmaps/{name}", self._get_configmap)
        app.router.add_post("/api/v1/namespaces/{namespace}/configmaps", self._put_configmap)
        app.router.add_put("/api/v1/namespaces/{namespace}/configmaps/{name}", self._put_configmap)
        app.router.add_get(
            "/api/v1/namespaces/{namespace}/services/{service}/proxy/{path:.*}", self._proxy
        )
        app.router.add_get("/{path:.*}", self._get)
        app.router.add_delete("/{path:.*}", self._delete_applied)
        app.router.add_patch("/{path:.*}", self._patch)
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self._token_review)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def down() -> None:
            for watch in self._watches:
                watch.queue.put_nowait(None)
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(down(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def kubeconfig(self, context: str = "test") -> Path:
        """A kubeconfig file for this server, as ``kubectl config view --raw`` writes."""
        path = self.directory / "kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": f"https://127.0.0.1:{self.port}",
                        "certificate-authority": str(self.ca_path),
                    },
                }
            ],
            "users": [{"name": "tester", "user": {"token": self.bearer_token}}],
            "contexts": [{"name": context, "context": {"cluster": "test", "user": "tester"}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def _call(self, fn: Any, *args: Any) -> Any:
        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    # -- what tests do -----------------------------------------------------------------

    def apply(self, obj: dict[str, Any]) -> None:
        self._call(self._apply, obj)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self._call(self._delete, kind, namespace, name)

    def compact(self) -> None:
        """Forget history up to now: a watch resuming from before gets 410 Gone."""
        self._call(self._compact)

    def drop_watches(self) -> None:
        """Cut every open watch's connection, as a restarting API server or a load
        balancer does."""
        self._call(self._drop)

    def bookmark(self) -> None:
        self._call(self._bookmark)

    def open_watches(self, kind: str | None = None) -> int:
        """Watches open now (of ``kind`` only, if given)."""

        def count() -> int:
            return sum(kind is None or SERVED[w.collection][0] == kind for w in self._watches)

        return int(self._call(count))

    def _collection_of(self, kind: str) -> str:
        return next(path for path, (k, _) in SERVED.items() if k == kind)

    def _apply(self, obj: dict[str, Any]) -> None:
        obj = json.loads(json.dumps(obj))
        collection = self._collection_of(obj["kind"])
        meta = obj.setdefault("metadata", {})
        if obj["kind"] in CLUSTER_SCOPED:
            meta["namespace"] = ""
        else:
            meta.setdefault("namespace", "default")
        key = (collection, meta["namespace"], meta["name"])
        self.revision += 1
        meta["resourceVersion"] = str(self.revision)
        old = self.objects.get(key)
        meta["uid"] = (old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4())
        self.objects[key] = obj
        self._record(collection, "MODIFIED" if old else "ADDED", obj)

    def _delete(self, kind: str, namespace: str, name: str) -> None:
        collection = self._collection_of(kind)
        obj = self.objects.pop((collection, namespace, name))
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        self._record(collection, "DELETED", obj)

    def _record(self, collection: str, kind: str, obj: dict[str, Any]) -> None:
        event = {"type": kind, "object": obj}
        self.history.append((self.revision, collection, event))
        for watch in self._watches:
            if watch.collection == collection:
                watch.queue.put_nowait(event)

    def _compact(self) -> None:
        self.revision += 1
        self.compacted = self.revision
        self.history.clear()

    def _drop(self) -> None:
        for watch in list(self._watches):
            if watch.request.transport is not None:
                watch.request.transport.abort()
            watch.queue.put_nowait(None)

    def _bookmark(self) -> None:
        self.revision += 1
        for watch in self._watches:
            if watch.bookmarks:
                kind, api_version = SERVED[watch.collection]
                watch.queue.put_nowait(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": kind,
                            "apiVersion": api_version,
                            "metadata": {"resourceVersion": str(self.revision)},
                        },
                    }
                )

    # -- the API -----------------------------------------------------------------------

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.bearer_token}":
            return _status(401, "Unauthorized", "no valid bearer token")
        response: web.StreamResponse = await handler(request)
        return response

    async def _get(self, request: web.Request) -> web.StreamResponse:
        collection = "/" + request.match_info["path"]
        parent, _, name = collection.rpartition("/")
        if collection not in SERVED and parent in SERVED:
            found = self.objects.get((parent, "", name))
            if found is None:
                return _status(404, "NotFound", f"{name} not found")
            return web.json_response(found)
        if collection not in SERVED:
            return _status(
                404, "NotFound", f"the server could not find the requested resource ({collection})"
            )
        if request.query.get("watch") in ("true", "1"):
            return await self._watch(request, collection)
        self.list_requests += 1
        kind, api_version = SERVED[collection]
        items = [o for (c, _, _), o in sorted(self.objects.items()) if c == collection]
        return web.json_response(
            {
                "kind": f"{kind}List",
                "apiVersion": api_version,
                "metadata": {"resourceVersion": str(self.revision)},
                # A real server leaves kind and apiVersion out of a list's items.
                "items": [
                    {k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items
                ],
            }
        )

    async def _watch(self, request: web.Request, collection: str) -> web.StreamResponse:
        since = int(request.query.get("resourceVersion") or 0)
        self.watch_requests.append(str(since))
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        try:
            await response.prepare(request)
        except ConnectionResetError:  # the client went away (a test tearing down)
            return response
        if since < self.compacted:
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: {since} ({self.compacted})",
                "reason": "Expired",
                "code": 410,
            }
            await response.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
            return response
        watch = _Watch(
            collection, asyncio.Queue(), request, request.query.get("allowWatchBookmarks") == "true"
        )
        for revision, c, event in self.history:
            if c == collection and revision > since:
                watch.queue.put_nowait(event)
        self._watches.append(watch)
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    event = await asyncio.wait_for(watch.queue.get(), left)
                except TimeoutError:
                    break
                if event is None:
                    break
                await response.write(json.dumps(event).encode() + b"\n")
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            self._watches.remove(watch)
        return response

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        """The API server's proxy to a Service (``services/<scheme>:<name>:<port>/proxy``),
        to whatever address a test set for it in ``services``."""
        key = f"{request.match_info['namespace']}/{request.match_info['service']}"
        target = self.services.get(key)
        if target is None:
            return _status(503, "ServiceUnavailable", f"no endpoints available for service {key}")
        url = f"{target}/{request.match_info['path']}"
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, params=request.query) as reply,
        ):
            body = await reply.read()
            return web.Response(body=body, status=reply.status, content_type=reply.content_type)

    async def _get_configmap(self, request: web.Request) -> web.StreamResponse:
        key = (request.match_info["namespace"], request.match_info["name"])
        if key not in self.configmaps:
            return _status(404, "NotFound", f'configmaps "{key[1]}" not found')
        return web.json_response(self.configmaps[key])

    async def _put_configmap(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        key = (request.match_info["namespace"], body["metadata"]["name"])
        exists = key in self.configmaps
        if request.method == "POST" and exists:
            return _status(409, "AlreadyExists", f'configmaps "{key[1]}" already exists')
        if request.method == "PUT" and not exists:
            return _status(404, "NotFound", f'configmaps "{key[1]}" not found')
        self.revision += 1
        body["metadata"]["resourceVersion"] = str(self.revision)
        self.configmaps[key] = body
        return web.json_response(body, status=200 if exists else 201)

    async def _delete_applied(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        if path not in self.applied:
            return _status(404, "NotFound", f"{path} not found")
        return web.json_response(self.applied.pop(path))

    async def _patch(self, request: web.Request) -> web.StreamResponse:
        """A JSON Patch of a cluster-scoped object (the webhook configuration), or a
        server-side apply of any object (``sidemesh install --apply``), kept by path."""
        if request.content_type == "application/apply-patch+yaml":
            if not request.query.get("fieldManager"):
                return _status(422, "Invalid", "fieldManager is required for apply")
            self.applied["/" + request.match_info["path"]] = yaml.safe_load(await request.text())
            return web.json_response(self.applied["/" + request.match_info["path"]])
        if request.content_type != "application/json-patch+json":
            return _status(415, "UnsupportedMediaType", request.content_type)
        parent, _, name = ("/" + request.match_info["path"]).rpartition("/")
        found = self.objects.get((parent, "", name))
        if found is None:
            return _status(404, "NotFound", f"{name} not found")
        patched = jsonpatch.apply_patch(found, await request.json())
        self._apply(patched)
        return web.json_response(self.objects[(parent, "", name)])

    async def _post_event(self, request: web.Request) -> web.StreamResponse:
        event = await request.json()
        self.events.append(event)
        return web.json_response(event, status=201)

    # -- service-account tokens and TokenReview ----------------------------------------

    def token(
        self,
        namespace: str,
        service_account: str,
        pod: str | None,
        audience: str = "sidemesh",
        lifetime_s: int = 600,
    ) -> str:
        """A projected service-account token as the kubelet gets one (bound to a pod)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "aud": [audience],
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_s,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": service_account, "uid": str(uuid.uuid4())},
            },
        }
        if pod is not None:
            claims["kubernetes.io"]["pod"] = {"name": pod, "uid": str(uuid.uuid4())}
        return jwt.encode(claims, self.signing_key, algorithm="RS256")

    async def _token_review(self, request: web.Request) -> web.StreamResponse:
        review = await request.json()
        spec = review.get("spec") or {}
        audiences = spec.get("audiences") or [ISSUER]
        status: dict[str, Any]
        try:
            claims = jwt.decode(
                spec.get("token", ""),
                self.signing_key.public_key(),
                algorithms=["RS256"],
                audience=audiences,
                issuer=ISSUER,
            )
        except jwt.PyJWTError as exc:
            status = {"authenticated": False, "error": f"invalid bearer token: {exc}"}
        else:
            info = claims["kubernetes.io"]
            extra = {}
            if "pod" in info:
                extra = {
                    "authentication.kubernetes.io/pod-name": [info["pod"]["name"]],
                    "authentication.kubernetes.io/pod-uid": [info["pod"]["uid"]],
                }
            status = {
                "authenticated": True,
                "audiences": [a for a in claims["aud"] if a in audiences],
                "user": {
                    "username": claims["sub"],
                    "uid": info["serviceaccount"]["uid"],
                    "groups": [
                        "system:serviceaccounts",
                        f"system:serviceaccounts:{info['namespace']}",
                        "system:authenticated",
                    ],
                    "extra": extra,
                },
            }
        return web.json_response(
            {
                "kind": "TokenReview",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": None},
                "spec": spec,
                "status": status,
            },
            status=201,
        )


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        },
        status=code,
    )
