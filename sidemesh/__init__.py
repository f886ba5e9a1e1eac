"""sidemesh: a service mesh with a Python control plane and Envoy sidecars.

The public API is listed in ``__all__`` and tested in ``tests/test_exported_members.py``.
"""

from sidemesh.errors import ConfigError, SidemeshError
from sidemesh.model import MeshState, load_mesh_file

__version__ = "0.1.0"

__all__ = ["ConfigError", "MeshState", "SidemeshError", "__version__", "load_mesh_file"]
