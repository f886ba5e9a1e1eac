"""Sources of truth → ``MeshState``.

Owns: reading a source (today: the mesh.yaml file, watched for changes), rejecting
bad input with the model's errors while the last good state keeps serving, and
numbering accepted states.
Must not: translate to Envoy config or talk to proxies.
"""

from sidemesh.sources.file import FileSource

__all__ = ["FileSource"]
