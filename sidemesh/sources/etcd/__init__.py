"""etcd as a source of truth, for a mesh on many hosts: the documents mesh.yaml holds
(``sidemesh apply --etcd``) and the live registrations of workloads (each under a lease
its agent keeps alive), under one key prefix, watched and reported as a ``MeshState``.

Owns: connecting to an etcd cluster (``client.py``), the source (``source.py``) and
writing documents (``apply.py``); the key layout is ``model.registry``'s, shared with
the agents that register.
Must not: keep state of its own beyond what etcd holds (any replica of the control
plane reading the same prefix serves the same mesh)."""

from sidemesh.model.registry import Layout
from sidemesh.sources.etcd.client import etcd_client
from sidemesh.sources.etcd.source import EtcdSource

__all__ = ["EtcdSource", "Layout", "etcd_client"]
