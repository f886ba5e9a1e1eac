"""The control plane's side of a cluster: the Kubernetes source, service-account
tokens as proof of identity, and the injection webhook served over HTTPS with a
certificate from the mesh's own CA (whose root it keeps current as the webhook
configuration's ``caBundle``, so the API server trusts it)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import socket
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from sidemesh.errors import SidemeshError
from sidemesh.identity.ca import CertificateAuthority, serving_certificate, write_private
from sidemesh.identity.kube_tokens import ServiceAccountOf, TokenReviewValidator
from sidemesh.identity.spiffe import SpiffeId
from sidemesh.identity.tokens import BootstrapTokens, TokenValidator
from sidemesh.kube.inject import INJECT_LABEL, InjectConfig
from sidemesh.kube.manifests import VALIDATING_CONFIGURATION_NAME, WEBHOOK_CONFIGURATION_NAME
from sidemesh.kube.webhook import webhook_app
from sidemesh.model.refs import WorkloadRef
from sidemesh.sources.aggregate import Feed
from sidemesh.sources.kube import KubeApi, KubeSource
from sidemesh.sources.kube.client import KubeApiError
from sidemesh.sources.kube.informer import Informer, Resource

log = logging.getLogger(__name__)

TOKEN_REVIEW_PATH = "/apis/authentication.k8s.io/v1/tokenreviews"
MUTATING_CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
VALIDATING_CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
NAMESPACES = Resource("Namespace", "v1", "namespaces")
ROOT_CERT_KEY = "root-cert.pem"
WEBHOOK_CERT_LIFETIME = dt.timedelta(days=365)


@dataclass(frozen=True)
class ClusterSettings:
    context: str | None = None
    """The kubeconfig context (kubectl's current one if None; in a pod, the pod's)."""
    kubeconfig: Path | None = None
    namespace: str = "sidemesh-system"
    """Where the control plane runs: its Service's DNS name is in the webhook's certificate."""
    service: str = "sidemesh"
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 15017
    inject: InjectConfig = field(default_factory=InjectConfig)


class EitherToken:
    """A JWT (three dot-separated parts) is a service-account token, reviewed by the
    API server; anything else is a bootstrap token (a gateway or a host outside the
    cluster that the control plane started or enrolled)."""

    def __init__(self, bootstrap: BootstrapTokens, service_account: TokenValidator) -> None:
        self.bootstrap = bootstrap
        self.service_account = service_account

    async def validate(self, token: str) -> WorkloadRef:
        if token.count(".") == 2:
            return await self.service_account.validate(token)
        return await self.bootstrap.validate(token)


class Cluster:
    def __init__(self, api: KubeApi, settings: ClusterSettings) -> None:
        self.api = api
        self.settings = settings
        self.webhook_port = 0
        self._source: KubeSource | None = None
        self._root_pem = b""
        self._namespaces = Informer(api, NAMESPACES, self._namespaces_changed)
        self._namespaces_task: asyncio.Task[None] | None = None
        self._publishing: asyncio.Task[None] | None = None
        self._webhook: uvicorn.Server | None = None
        self._webhook_task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, settings: ClusterSettings) -> Cluster:
        return cls(await KubeApi.connect(settings.context, settings.kubeconfig), settings)

    def source(self, feed: Feed, mesh: Mapping[str, Any] | None = None) -> KubeSource:
        self._source = KubeSource(self.api, feed, mesh)
        return self._source

    def _check_policy(self, obj: Mapping[str, Any]) -> list[str]:
        return self._source.problems_with(obj) if self._source is not None else []

    def validator(
        self, bootstrap: BootstrapTokens, service_account_of: ServiceAccountOf
    ) -> TokenValidator:
        async def review(body: Mapping[str, Any]) -> Mapping[str, Any]:
            return await self.api.post(TOKEN_REVIEW_PATH, body)

        return EitherToken(bootstrap, TokenReviewValidator(review, service_account_of))

    def webhook_hosts(self) -> tuple[str, ...]:
        s = self.settings
        return (f"{s.service}.{s.namespace}.svc", f"{s.service}.{s.namespace}.svc.cluster.local")

    async def serve_webhook(self, ca: CertificateAuthority, directory: Path) -> None:
        """Serve injection over HTTPS (a certificate from the mesh CA for the control
        plane's Service name), then put the CA's root into the webhook configuration."""
        s = self.settings
        identity = SpiffeId(ca.trust_domain, s.namespace, s.service)
        hosts = (*self.webhook_hosts(), "localhost", "127.0.0.1")
        chain, key = serving_certificate(ca, identity, hosts, WEBHOOK_CERT_LIFETIME)
        (directory / "webhook-cert.pem").write_bytes(chain)
        write_private(directory / "webhook-key.pem", key)
        sock = socket.create_server((s.webhook_host, s.webhook_port))
        self.webhook_port = sock.getsockname()[1]
        self._webhook = uvicorn.Server(
            uvicorn.Config(
                webhook_app(s.inject, self._check_policy),
                log_level="warning",
                access_log=False,
                lifespan="off",
                ssl_certfile=str(directory / "webhook-cert.pem"),
                ssl_keyfile=str(directory / "webhook-key.pem"),
            )
        )
        self._webhook_task = asyncio.create_task(self._webhook.serve(sockets=[sock]))
        for configuration in (
            f"{MUTATING_CONFIGURATIONS}/{WEBHOOK_CONFIGURATION_NAME}",
            f"{VALIDATING_CONFIGURATIONS}/{VALIDATING_CONFIGURATION_NAME}",
        ):
            await self.publish_ca_bundle(configuration, ca.trust_bundle_pem)

    async def publish_root(self, root_pem: bytes) -> None:
        """Keep a ``sidemesh-root-cert`` ConfigMap with the mesh root in every namespace
        labelled for injection: injected pods mount it to trust the CA and their peers."""
        self._root_pem = root_pem
        self._namespaces_task = asyncio.create_task(self._namespaces.run())
        await self._namespaces.synced.wait()

    def _namespaces_changed(self) -> None:
        if self._root_pem and (self._publishing is None or self._publishing.done()):
            self._publishing = asyncio.get_running_loop().create_task(self._publish_roots())

    async def _publish_roots(self) -> None:
        for obj in list(self._namespaces.objects.values()):
            meta = obj.get("metadata") or {}
            if (meta.get("labels") or {}).get(INJECT_LABEL) == "enabled":
                await self._ensure_root_configmap(str(meta.get("name")))

    async def _ensure_root_configmap(self, namespace: str) -> None:
        name = self.settings.inject.root_cert_configmap
        path = f"/api/v1/namespaces/{namespace}/configmaps"
        wanted = {ROOT_CERT_KEY: self._root_pem.decode()}
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/part-of": "sidemesh"},
            },
            "data": wanted,
        }
        try:
            try:
                current = await self.api.get(f"{path}/{name}")
            except KubeApiError as exc:
                if exc.status != 404:
                    raise
                await self.api.post(path, body)
                log.info("namespace %s: created ConfigMap %s with the mesh root", namespace, name)
                return
            if current.get("data") != wanted:
                body["metadata"]["resourceVersion"] = (current.get("metadata") or {}).get(
                    "resourceVersion"
                )
                await self.api.put(f"{path}/{name}", body)
                log.info("namespace %s: updated ConfigMap %s to the mesh root", namespace, name)
        except KubeApiError as exc:
            log.warning("namespace %s: cannot publish the mesh root: %s", namespace, exc)

    async def publish_ca_bundle(self, path: str, bundle_pem: bytes) -> bool:
        """Set ``caBundle`` of every webhook of the configuration at ``path`` to the
        mesh's root. False (and a warning) if the configuration is not installed yet."""
        try:
            current = await self.api.get(path)
        except KubeApiError as exc:
            log.warning(
                "cannot keep the injection webhook's caBundle current: %s "
                "(is sidemesh installed? `sidemesh install | kubectl apply -f -`)",
                exc,
            )
            return False
        encoded = base64.b64encode(bundle_pem).decode()
        webhooks = current.get("webhooks") or []
        patch = [
            {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": encoded}
            for i, hook in enumerate(webhooks)
            if (hook.get("clientConfig") or {}).get("caBundle") != encoded
        ]
        if not patch:
            return True
        try:
            await self.api.patch(path, patch)
        except SidemeshError as exc:
            log.warning("cannot update the injection webhook's caBundle: %s", exc)
            return False
        log.info("webhook configuration %s now trusts the mesh root", path.rsplit("/", 1)[1])
        return True

    async def close(self) -> None:
        for task in (self._namespaces_task, self._publishing):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        if self._webhook is not None and self._webhook_task is not None:
            self._webhook.should_exit = True
            await self._webhook_task
        await self.api.close()
