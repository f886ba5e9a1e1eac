"""A small client of the control plane's HTTP API, for commands that show things.

Locally it is the API's own address (``--api``). Against a cluster (``--context`` or
``--kubeconfig``) it is the API server's proxy to the control plane's Service, with
the credentials and CA of the kubeconfig kubectl would use: nothing to port-forward,
and no more access than the user's own to that Service's proxy."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

DEFAULT_API = "http://127.0.0.1:15014"
API_PORT_NAME = "http-api"
"""The control plane Service's port for the API (as ``sidemesh install`` names it)."""

_cluster: dict[str, Any] = {}
"""The cluster named on the command line (``--context``, ``--kubeconfig``), if any."""
_resolved: dict[str, Any] = {}


class ApiUnreachable(Exception):
    pass


def select_cluster(
    context: str | None = None, kubeconfig: Path | None = None, namespace: str | None = None
) -> None:
    """Read the API through a cluster's API server (called by the options' callbacks,
    so every command that shows things takes ``--context`` the same way)."""
    for key, value in (("context", context), ("kubeconfig", kubeconfig), ("namespace", namespace)):
        if value is not None:
            _cluster[key] = value


def _base(api: str) -> tuple[str, dict[str, Any]]:
    """Where to send requests, and how (TLS trust, client certificate, token)."""
    if not ({"context", "kubeconfig"} & set(_cluster)):
        return api.rstrip("/"), {}
    if not _resolved:
        _resolved.update(_resolve(**_cluster))
    return _resolved["base"], _resolved["kwargs"]


def _resolve(
    context: str | None = None, kubeconfig: Path | None = None, namespace: str = "sidemesh-system"
) -> dict[str, Any]:
    from kubernetes_asyncio import config as kube_config
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config.config_exception import ConfigException

    configuration = Configuration()
    try:
        asyncio.run(
            kube_config.load_kube_config(
                config_file=str(kubeconfig) if kubeconfig else None,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
        )
    except (ConfigException, OSError) as exc:
        where = f"context {context!r}" if context else "the current context"
        raise ApiUnreachable(f"cannot find the cluster ({where}): {exc}") from exc
    base = (
        f"{str(configuration.host).rstrip('/')}/api/v1/namespaces/{namespace}"
        f"/services/http:sidemesh:{API_PORT_NAME}/proxy"
    )
    headers = {}
    token = (configuration.api_key or {}).get("BearerToken")
    if token:
        headers["Authorization"] = token if token.startswith("Bearer ") else f"Bearer {token}"
    kwargs: dict[str, Any] = {
        "headers": headers,
        "verify": configuration.ssl_ca_cert or configuration.verify_ssl,
    }
    if configuration.cert_file and configuration.key_file:
        kwargs["cert"] = (configuration.cert_file, configuration.key_file)
    return {"base": base, "kwargs": kwargs}


def get(api: str, path: str) -> httpx.Response:
    """GET ``path`` of the API; raises ``ApiUnreachable`` if nothing answers."""
    base, kwargs = _base(api)
    try:
        return httpx.get(f"{base}{path}", timeout=5, **kwargs)
    except httpx.HTTPError as exc:
        raise ApiUnreachable(
            f"cannot read {path} from the control plane at {base}: {exc} "
            "(is `sidemesh controlplane` running? --api or SIDEMESH_API picks another)"
        ) from exc


def get_json(api: str, path: str) -> Any:
    response = get(api, path)
    if response.is_error:
        raise ApiUnreachable(
            f"cannot read {path} from the control plane: {response.status_code} "
            f"{response.reason_phrase}: {_why(response)}"
        )
    return response.json()


def _why(response: httpx.Response) -> str:
    """The reason an answer gives: FastAPI's ``detail``, a Kubernetes Status'
    ``message`` (the API server's proxy), else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("message") or body)
    return str(body)[:200]
