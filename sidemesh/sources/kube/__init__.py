"""Kubernetes as a source of truth: ``KubeSource`` watches a cluster's Services, meshed
Pods and policy objects and reports them as a ``MeshState``.

Owns: talking to the API server (``client.py``), keeping each kind current
(``informer.py``), turning objects into the model's documents (``convert.py``).
Must not: write to the cluster beyond Events about objects it leaves out, or know
about Envoy, injection or install manifests (``sidemesh.kube`` does)."""

from sidemesh.sources.kube.client import KubeApi
from sidemesh.sources.kube.source import KubeSource

__all__ = ["KubeApi", "KubeSource"]
