"""A small client of the control plane's HTTP API, for commands that show things."""

from __future__ import annotations

from typing import Any

import httpx

DEFAULT_API = "http://127.0.0.1:15014"


class ApiUnreachable(Exception):
    pass


def get_json(api: str, path: str) -> Any:
    try:
        response = httpx.get(f"{api.rstrip('/')}{path}", timeout=5)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise ApiUnreachable(
            f"cannot read {path} from the control plane at {api}: {exc} "
            "(is `sidemesh controlplane` running? --api or SIDEMESH_API picks another)"
        ) from exc
    return response.json()
