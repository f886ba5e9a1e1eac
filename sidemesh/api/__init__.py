"""The control plane's HTTP API (and, later, the dashboard).

Owns: the routes under ``/v1`` and ``/healthz``, their JSON shapes, OpenAPI.
Must not: change mesh state by reaching into other rooms; it reads what it is given.
"""

from sidemesh.api.app import ApiView, create_app

__all__ = ["ApiView", "create_app"]
