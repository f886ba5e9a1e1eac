"""Sources of truth → ``MeshState``.

Owns: the ``Source`` protocol (``protocol.py``): each source reads one kind of input
(today the mesh.yaml file, watched for changes; REST registration, etcd and
Kubernetes come later), validates it with the model's loader, and reports whole
snapshots of what it knows, or refusals of bad input, to the ``Aggregator``
(``aggregate.py``), which alone merges the sources, numbers versions, keeps unchanged
objects identical across versions, keeps each source's refusals for the API, and hands
each new state to its listeners.
Must not: translate to Envoy config or talk to proxies; a source must not number
versions or publish a state itself.
"""

from sidemesh.sources.aggregate import Aggregator, Feed, Listener
from sidemesh.sources.file import FileSource
from sidemesh.sources.protocol import Snapshot, Source

__all__ = ["Aggregator", "Feed", "FileSource", "Listener", "Snapshot", "Source"]
