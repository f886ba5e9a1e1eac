"""SPIFFE IDs: ``spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>``."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PATTERN = re.compile(r"^spiffe://([^/]+)/ns/([^/]+)/sa/([^/]+)$")


@dataclass(frozen=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    service_account: str

    @property
    def uri(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        match = _PATTERN.match(uri)
        if match is None:
            raise ValueError(f"{uri!r} is not spiffe://<trust-domain>/ns/<ns>/sa/<sa>")
        return cls(*match.groups())

    def __str__(self) -> str:
        return self.uri
