"""Translation: ``MeshState`` + one proxy → that proxy's Envoy resources; sidecar bootstrap.

Owns: one pure builder per Envoy resource kind (listeners, routes, clusters,
endpoints), resource names, the bootstrap, and ``Translator``, which memoizes the
builders so an unchanged service is not translated again.
Must not: do I/O, read a clock, hold sockets or know about xDS streams.
"""

from sidemesh.envoy.proxy import ProxyId
from sidemesh.envoy.resources import Resource, ResourceType
from sidemesh.envoy.translator import ProxyResources, Translator

__all__ = ["ProxyId", "ProxyResources", "Resource", "ResourceType", "Translator"]
