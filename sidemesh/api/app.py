"""``create_app``: the HTTP API over a read-only view of the control plane."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from sidemesh.sources import FileSource
from sidemesh.xds import Publisher, StatusBoard


@dataclass(frozen=True)
class ApiView:
    """What the API may read."""

    publisher: Publisher
    status: StatusBoard
    source: FileSource | None = None


def create_app(view: ApiView) -> FastAPI:
    app = FastAPI(
        title="sidemesh control plane",
        description="Mesh state and the proxies the control plane feeds.",
        version="1",
    )

    @app.get("/healthz", summary="Liveness: the control plane is up and serving xDS")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "meshVersion": view.publisher.state.version}

    @app.get("/v1/state", summary="The current mesh state (services, workloads, identities)")
    def state() -> dict[str, Any]:
        data = view.publisher.state.to_json()
        if view.source is not None:
            data["source"] = {
                "file": str(view.source.path),
                "rejectedEdits": view.source.rejected,
                "lastError": str(view.source.last_error) if view.source.last_error else None,
            }
        return data

    @app.get(
        "/v1/proxies",
        summary="Connected proxies: xDS mode, sent and ACKed version per type, last NACK",
    )
    def proxies() -> dict[str, Any]:
        return {"meshVersion": view.publisher.state.version, "proxies": view.status.to_json()}

    return app
