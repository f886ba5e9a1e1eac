"""Delivery: per-proxy snapshots and the ADS server that streams them to Envoy.

Owns: ``Snapshot`` (immutable resources of one proxy, checked for dangling
references), ``SnapshotCache`` (keyed by node id, with watches), the ADS server
(state-of-the-world and delta, nonces, ACK/NACK), per-proxy status, and
``Publisher``, which turns each new ``MeshState`` into snapshots for connected proxies.
Must not: read sources of truth or build Envoy messages itself (translation does).
"""

from sidemesh.xds.cache import SnapshotCache
from sidemesh.xds.publisher import Publisher
from sidemesh.xds.server import AdsServer
from sidemesh.xds.snapshot import Snapshot
from sidemesh.xds.status import ProxyStatus, StatusBoard

__all__ = ["AdsServer", "ProxyStatus", "Publisher", "Snapshot", "SnapshotCache", "StatusBoard"]
