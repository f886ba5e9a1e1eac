"""The agent's SDS server: gives its own Envoy the workload certificate and the trust
bundle over a Unix socket that only this user can open, and pushes new ones when the
certificate rotates. This is the only place a private key is sent anywhere."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from google.protobuf import any_pb2

from sidemesh.agent.certificates import WorkloadCertificate
from sidemesh.envoy.tls import TRUST_BUNDLE_SECRET, WORKLOAD_CERT_SECRET

log = logging.getLogger(__name__)

SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def secrets_for(cert: WorkloadCertificate) -> dict[str, secret_pb2.Secret]:
    return {
        WORKLOAD_CERT_SECRET: secret_pb2.Secret(
            name=WORKLOAD_CERT_SECRET,
            tls_certificate=common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(inline_bytes=cert.chain_pem),
                private_key=base_pb2.DataSource(inline_bytes=cert.key_pem),
            ),
        ),
        TRUST_BUNDLE_SECRET: secret_pb2.Secret(
            name=TRUST_BUNDLE_SECRET,
            validation_context=common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(inline_bytes=cert.trust_bundle_pem)
            ),
        ),
    }


class SdsServer(sds_pb2_grpc.SecretDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self._secrets: dict[str, secret_pb2.Secret] = {}
        self.version = 0
        self._streams: set[asyncio.Queue[Any]] = set()
        self._server: grpc.aio.Server | None = None

    async def start(self, socket_path: str) -> None:
        """``socket_path`` must be in a directory only this user can enter (the
        sidecar makes a private one); the socket itself is made 0600 as well."""
        if os.path.exists(socket_path):
            os.unlink(socket_path)
        self._server = grpc.aio.server()
        sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"unix:{socket_path}")
        await self._server.start()
        os.chmod(socket_path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0.5)

    def update(self, cert: WorkloadCertificate) -> None:
        self._secrets = secrets_for(cert)
        self.version += 1
        for queue in self._streams:
            queue.put_nowait(None)

    async def StreamSecrets(  # gRPC method name
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._streams.add(queue)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    queue.put_nowait(request)
            finally:
                queue.put_nowait(StopAsyncIteration)

        reader = asyncio.create_task(read())
        names: set[str] = set()
        nonce = 0
        sent_version = -1
        try:
            while True:
                item = await queue.get()
                if item is StopAsyncIteration:
                    return
                if item is not None:
                    if item.response_nonce and item.response_nonce != str(nonce):
                        continue
                    if item.HasField("error_detail"):
                        log.error("Envoy rejected its certificate: %s", item.error_detail.message)
                    new_names = set(item.resource_names)
                    if new_names != names:
                        names = new_names
                        sent_version = -1
                if names and sent_version != self.version and self._secrets:
                    nonce += 1
                    sent_version = self.version
                    yield discovery_pb2.DiscoveryResponse(
                        version_info=str(self.version),
                        resources=[
                            _pack(self._secrets[n]) for n in sorted(names) if n in self._secrets
                        ],
                        type_url=SECRET_TYPE,
                        nonce=str(nonce),
                    )
        finally:
            reader.cancel()
            self._streams.discard(queue)


def _pack(secret: secret_pb2.Secret) -> any_pb2.Any:
    body = any_pb2.Any()
    body.Pack(secret)
    return body
