"""Certificate signing: a caller proves who it is (a token), sends a CSR, gets a
certificate for its own SPIFFE ID and nothing else. Every refusal is logged with the
reason and the workload if known, never with the token."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable

from sidemesh.errors import SidemeshError
from sidemesh.identity.ca import CertificateAuthority, IssuedCertificate
from sidemesh.identity.csr import CsrRejected
from sidemesh.identity.spiffe import SpiffeId
from sidemesh.identity.tokens import InvalidToken, TokenValidator
from sidemesh.model.refs import WorkloadRef

log = logging.getLogger(__name__)

IdentityLookup = Callable[[WorkloadRef], SpiffeId | None]
"""The identity a workload has in the current mesh state, or None if it is not in it."""


class UnknownWorkload(SidemeshError):
    """The token is valid but its workload is not in the mesh (any more)."""


class SigningService:
    def __init__(
        self,
        ca: CertificateAuthority,
        validator: TokenValidator,
        lookup: IdentityLookup,
        lifetime: dt.timedelta,
    ) -> None:
        self.ca = ca
        self.validator = validator
        self.lookup = lookup
        self.lifetime = lifetime
        self.issued: dict[WorkloadRef, IssuedCertificate] = {}
        self.issued_total = 0
        self.refused: Counter[str] = Counter()
        """Refusals by reason: token, workload, csr."""

    async def sign(self, token: str, csr_pem: bytes) -> IssuedCertificate:
        """Raises ``InvalidToken``, ``UnknownWorkload`` or ``CsrRejected``."""
        try:
            workload = await self.validator.validate(token)
        except InvalidToken as exc:
            self.refused["token"] += 1
            log.warning("refused a certificate request: %s", exc)
            raise
        identity = self.lookup(workload)
        if identity is None:
            self.refused["workload"] += 1
            log.warning("refused a certificate for %s: the workload is not in the mesh", workload)
            raise UnknownWorkload(f"workload {workload} is not in the mesh")
        try:
            issued = self.ca.sign(csr_pem, identity, self.lifetime)
        except CsrRejected as exc:
            self.refused["csr"] += 1
            log.warning("refused a certificate for %s: %s", workload, exc)
            raise
        self.issued[workload] = issued
        self.issued_total += 1
        log.info(
            "issued %s to %s: serial %x, expires %s",
            identity,
            workload,
            issued.serial,
            issued.not_after.isoformat(timespec="seconds"),
        )
        return issued
