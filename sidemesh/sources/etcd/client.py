"""Connecting to an etcd cluster through ``aetcd`` (etcd's gRPC API, asyncio)."""

from __future__ import annotations

import aetcd

from sidemesh.model.registry import GRPC_KEEPALIVE, grpc_target

REQUEST_TIMEOUT_S = 5


def etcd_client(endpoints: str) -> aetcd.Client:
    """A client of the etcd cluster at ``endpoints`` (comma-separated); raises
    ``ValueError`` naming an endpoint that is not ``http://HOST:PORT``."""
    host, port = grpc_target(endpoints)
    return aetcd.Client(host=host, port=port, timeout=REQUEST_TIMEOUT_S, options=GRPC_KEEPALIVE)
