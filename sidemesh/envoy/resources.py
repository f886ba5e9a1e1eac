"""A translated Envoy resource, packed once and versioned by its content."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum

from google.protobuf import any_pb2
from google.protobuf.message import Message

_PREFIX = "type.googleapis.com/envoy."


class ResourceType(Enum):
    """xDS resource types, in ADS order. The order matters: a cluster must exist
    before its endpoints are useful and a listener before its routes, so pushes go
    clusters → endpoints → listeners → routes → virtual hosts (Envoy's own warming
    order)."""

    CLUSTER = _PREFIX + "config.cluster.v3.Cluster"
    ENDPOINT = _PREFIX + "config.endpoint.v3.ClusterLoadAssignment"
    LISTENER = _PREFIX + "config.listener.v3.Listener"
    ROUTE = _PREFIX + "config.route.v3.RouteConfiguration"
    VIRTUAL_HOST = _PREFIX + "config.route.v3.VirtualHost"
    """VHDS: a route configuration's virtual hosts one by one, each sent when the proxy
    first needs it (delta xDS only)."""

    @property
    def url(self) -> str:
        return self.value

    @property
    def short(self) -> str:
        return {
            ResourceType.CLUSTER: "clusters",
            ResourceType.ENDPOINT: "endpoints",
            ResourceType.LISTENER: "listeners",
            ResourceType.ROUTE: "routes",
            ResourceType.VIRTUAL_HOST: "vhosts",
        }[self]

    @property
    def is_wildcard(self) -> bool:
        """Listeners and clusters are sent whole (a missing one is deleted);
        endpoints and routes are requested by name."""
        return self in (ResourceType.CLUSTER, ResourceType.LISTENER)

    @classmethod
    def from_url(cls, url: str) -> ResourceType | None:
        try:
            return cls(url)
        except ValueError:
            return None


ADS_ORDER: tuple[ResourceType, ...] = tuple(ResourceType)


@dataclass(frozen=True, slots=True)
class Resource:
    """One named resource: its message, packed into an ``Any`` once, and a version
    that is a hash of its bytes, so an unchanged resource keeps its version."""

    name: str
    type: ResourceType
    message: Message
    body: any_pb2.Any
    version: str

    @classmethod
    def of(cls, rtype: ResourceType, name: str, message: Message) -> Resource:
        body = any_pb2.Any()
        body.Pack(message, deterministic=True)
        if body.type_url != rtype.url:
            raise TypeError(f"{name}: a {body.type_url} is not a {rtype.url}")
        version = hashlib.blake2b(body.value, digest_size=8).hexdigest()
        return cls(name=name, type=rtype, message=message, body=body, version=version)
