"""The few Kubernetes API calls sidemesh makes, through ``kubernetes_asyncio``.

The library finds the cluster as kubectl does (``$KUBECONFIG`` or ``~/.kube/config``
and a context, or the pod's service account in a cluster) and carries TLS and
credentials; objects stay JSON mappings (sidemesh reads a handful of fields of each,
and policy objects go to the model's own validation as they are)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config.config_exception import ConfigException

from sidemesh.errors import SidemeshError

WATCH_TIMEOUT_S = 300
"""A watch asks the server to end it after this (it then resumes from where it was):
a stream silently cut by a load balancer is noticed within this time at worst."""
REQUEST_TIMEOUT_S = 30.0


class KubeApiError(SidemeshError):
    """The API server answered with an error status."""

    def __init__(self, status: int, what: str, message: str) -> None:
        self.status = status
        answer = f": the Kubernetes API answered {status}" if status else ""
        super().__init__(f"{what}{answer}: {message}")


class Gone(KubeApiError):
    """410: the resourceVersion asked for is older than the server keeps; list again."""


class KubeApi:
    def __init__(self, client: ApiClient) -> None:
        self.client = client

    @classmethod
    async def connect(cls, context: str | None = None, kubeconfig: Path | None = None) -> KubeApi:
        """The cluster kubectl would talk to (``context`` of ``kubeconfig``, each as
        kubectl defaults them), or, inside a pod with neither given, the pod's own."""
        configuration = Configuration()
        try:
            if kubeconfig is None and context is None and "KUBERNETES_SERVICE_HOST" in os.environ:
                kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
            else:
                await kube_config.load_kube_config(
                    config_file=str(kubeconfig) if kubeconfig is not None else None,
                    context=context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (ConfigException, OSError) as exc:
            where = f"kubeconfig {kubeconfig}" if kubeconfig else "the kubeconfig kubectl uses"
            detail = f"context {context!r}: " if context else ""
            raise KubeApiError(0, where, f"cannot find the cluster: {detail}{exc}") from exc
        return cls(ApiClient(configuration))

    async def close(self) -> None:
        await self.client.close()

    async def _request(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: aiohttp.ClientTimeout | None = None,
        content_type: str = "application/json",
    ) -> aiohttp.ClientResponse:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        response: aiohttp.ClientResponse = await self.client.call_api(
            path,
            method,
            query_params=list((params or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout or aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        )
        return response

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self._json("GET", path, params)

    async def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._json("POST", path, None, body)

    async def put(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._json("PUT", path, None, body)

    async def delete(self, path: str) -> dict[str, Any]:
        return await self._json("DELETE", path, None)

    async def apply(self, path: str, body: Mapping[str, Any], field_manager: str) -> dict[str, Any]:
        """Server-side apply of ``body`` at ``path`` (the object's own path)."""
        return await self._json(
            "PATCH",
            path,
            {"fieldManager": field_manager, "force": "true"},
            body,
            "application/apply-patch+yaml",
        )

    async def patch(self, path: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
        """A JSON Patch (RFC 6902)."""
        return await self._json("PATCH", path, None, operations, "application/json-patch+json")

    async def _json(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        try:
            response = await self._request(method, path, params, body, content_type=content_type)
            async with response:
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            # One error type for callers (the CA's token review among them), which
            # need not know which HTTP library carries the call.
            raise KubeApiError(
                0, f"{method} {path}", f"the Kubernetes API is unreachable ({exc})"
            ) from exc
        if response.status >= 300:
            raise _error(response.status, f"{method} {path}", text)
        data: dict[str, Any] = json.loads(text)
        return data

    async def watch(
        self, path: str, resource_version: str, timeout_s: int = WATCH_TIMEOUT_S
    ) -> AsyncIterator[dict[str, Any]]:
        """The events after ``resource_version``, bookmarks included, until the server
        ends the watch. Raises ``Gone`` when the version is too old (as a status or as
        an ERROR event, the two ways servers say it)."""
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_s),
        }
        # No total timeout: a watch lasts; a read that stalls past the server's own end
        # of the watch means the connection is dead.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_s + 30)
        response = await self._request("GET", path, params, timeout=timeout)
        async with response:
            if response.status >= 300:
                raise _error(response.status, f"watch {path}", await response.text())
            buffer = b""
            # Lines by hand: an object (a pod with many containers) may be longer than
            # the stream reader's line limit.
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        event: dict[str, Any] = json.loads(line)
                        if event.get("type") == "ERROR":
                            status = event.get("object") or {}
                            raise _error(
                                int(status.get("code") or 500),
                                f"watch {path}",
                                str(status.get("message", "")),
                            )
                        yield event


def _error(status: int, what: str, text: str) -> KubeApiError:
    message = text
    with contextlib.suppress(ValueError, AttributeError):
        message = str(json.loads(text).get("message", text))
    return (Gone if status == 410 else KubeApiError)(status, what, message[:500])
