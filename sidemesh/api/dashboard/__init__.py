"""The dashboard: the mesh in a browser, served by the control plane itself (no install,
no CDN, every asset from here, read-only). A page of our own (``static/``: HTML, CSS and
a small script, no third-party code) over typed JSON endpoints, with the service graph
drawn as SVG on the server (``layout.py``, ``svg.py``) and a stream of server-sent
events telling the page when to refresh (``routes.py``)."""

from sidemesh.api.dashboard.routes import dashboard_router

__all__ = ["dashboard_router"]
