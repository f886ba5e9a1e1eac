"""Bootstrap tokens: how a workload proves which workload it is when it asks for a
certificate in local mode. The control plane makes one per workload and hands it to
whoever starts that workload; Envoy never sees it.

``TokenValidator`` is the seam for other proofs: a Kubernetes service-account token
reviewed by the API server (``kube_tokens.py``)."""

from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path
from typing import Protocol

from sidemesh.errors import SidemeshError
from sidemesh.identity.ca import make_private_dir, write_private_once
from sidemesh.model.refs import WorkloadRef as WorkloadRef  # re-exported: its old home

log = logging.getLogger(__name__)


class InvalidToken(SidemeshError):
    """The token is missing, unknown or malformed."""


class TokenValidator(Protocol):
    async def validate(self, token: str) -> WorkloadRef:
        """The workload the token belongs to; raises ``InvalidToken``. Async: a
        validator may ask another server (Kubernetes' TokenReview)."""
        ...


class BootstrapTokens:
    """One random token per workload, kept as 0600 files under ``directory`` so a
    restarted control plane still knows them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # Made with the first token, not here: a mesh.yaml refused at start leaves
        # nothing behind.
        self._tokens: dict[WorkloadRef, bytes] = {}
        self._reload()

    def path_for(self, workload: WorkloadRef) -> Path:
        return self.directory / f"{workload.name}.{workload.namespace}.token"

    def ensure(self, workload: WorkloadRef) -> Path:
        """The token file of ``workload``, made if it does not exist yet. Replicas of
        the control plane sharing the directory agree: the first to make a token makes
        it for all (the file is created at most once), the others read it."""
        path = self.path_for(workload)
        if path.exists():
            if workload not in self._tokens:
                self._tokens[workload] = path.read_bytes().strip()
            return path
        make_private_dir(self.directory)
        token = secrets.token_urlsafe(32).encode()
        if not write_private_once(path, token):
            token = path.read_bytes().strip()
        self._tokens[workload] = token
        return path

    async def validate(self, token: str) -> WorkloadRef:
        return self.check(token)

    def check(self, token: str) -> WorkloadRef:
        """``validate`` without the wait: a file lookup."""
        if not token:
            raise InvalidToken("no bootstrap token")
        offered = token.encode()
        found = self._find(offered)
        if found is None:
            self._reload()  # another replica may have made it since
            found = self._find(offered)
        if found is None:
            raise InvalidToken("unknown bootstrap token")
        return found

    def _find(self, offered: bytes) -> WorkloadRef | None:
        for workload, known in self._tokens.items():
            if hmac.compare_digest(known, offered):
                return workload
        return None

    def _reload(self) -> None:
        for path in self.directory.glob("*.*.token"):
            name, namespace, _ = path.name.rsplit(".", 2)
            self._tokens[WorkloadRef(name, namespace)] = path.read_bytes().strip()
