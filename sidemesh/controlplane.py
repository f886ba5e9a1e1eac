"""The composition root: builds the file source, translator, cache, ADS server and
HTTP API, and runs them in one event loop. Everything is created here, nothing at
import time."""

from __future__ import annotations

import asyncio
import logging
import socket
from contextlib import suppress

import grpc
import uvicorn
from envoy.service.discovery.v3 import ads_pb2_grpc

from sidemesh.api import ApiView, create_app
from sidemesh.settings import ControlPlaneSettings
from sidemesh.sources import FileSource
from sidemesh.xds import AdsServer, Publisher, SnapshotCache, StatusBoard
from sidemesh.xds.publisher import ResourceHook

log = logging.getLogger(__name__)


class ControlPlane:
    def __init__(self, settings: ControlPlaneSettings, hook: ResourceHook | None = None) -> None:
        self.settings = settings
        self.cache = SnapshotCache()
        self.status = StatusBoard()
        self.publisher = Publisher(self.cache, hook=hook)
        self.source = FileSource(settings.config, self.publisher.update_state)
        self.ads = AdsServer(
            self.cache,
            self.status,
            on_connect=self.publisher.proxy_connected,
            on_disconnect=self.publisher.proxy_disconnected,
        )
        self.xds_port = 0
        self.api_port = 0
        self._grpc: grpc.aio.Server | None = None
        self._api: uvicorn.Server | None = None
        self._api_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load mesh.yaml (raises ``ConfigError`` if bad), then serve ADS and the API."""
        state = self.source.load_initial()
        s = self.settings
        self._grpc = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self.ads, self._grpc)
        self.xds_port = self._grpc.add_insecure_port(f"{s.xds_host}:{s.xds_port}")
        if self.xds_port == 0:
            raise OSError(f"cannot listen for xDS on {s.xds_host}:{s.xds_port}")
        await self._grpc.start()

        api_socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        api_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        api_socket.bind((s.api_host, s.api_port))
        self.api_port = api_socket.getsockname()[1]
        app = create_app(ApiView(self.publisher, self.status, self.source))
        self._api = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        )
        self._api_task = asyncio.create_task(self._api.serve(sockets=[api_socket]))
        self._watch_task = asyncio.create_task(self.source.watch(s.poll_interval_s))
        log.info(
            "control plane serving mesh version %d from %s: xDS on %s:%d, API on http://%s:%d",
            state.version,
            s.config,
            s.xds_host,
            self.xds_port,
            s.api_host,
            self.api_port,
        )

    async def stop(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with suppress(asyncio.CancelledError):
                await self._watch_task
        if self._api is not None and self._api_task is not None:
            self._api.should_exit = True
            await self._api_task
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)

    async def run(self) -> None:
        """Start, then serve until cancelled."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
