"""Translation: ``MeshState`` + one proxy → that proxy's Envoy resources; sidecar bootstrap.

Owns, split by side (as linkerd's policy controller splits inbound and outbound):
``inbound/`` what only the callee builds (inbound listeners, their routes, the
local-app clusters); ``outbound/`` what a caller builds (outbound and upstream
listeners, the outbound route configuration, outbound clusters, endpoints);
``gateway.py`` the entry gateway's listener and routes; ``filters.py`` the one place
that assembles an HTTP filter chain, and in what order. Beside them: resource names
(``names.py``), shared proto constructors (``protos.py``), mTLS transport sockets
(``tls.py``), the bootstrap (``bootstrap.py``), the xDS node id (``proxy.py``), packed
and versioned resources (``resources.py``), and ``Translator`` (``translator.py``),
which decides what each proxy gets and memoizes every entry by a key that names all
its inputs. One pure builder per resource kind.
Must not: do I/O, read a clock, hold sockets or know about xDS streams; import any room
but ``model`` (and ``identity``, for names only).
"""

from sidemesh.envoy.proxy import ProxyId
from sidemesh.envoy.resources import Resource, ResourceType
from sidemesh.envoy.translator import ProxyResources, Translator

__all__ = ["ProxyId", "ProxyResources", "Resource", "ResourceType", "Translator"]
