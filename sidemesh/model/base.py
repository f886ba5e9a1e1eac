"""The base of every model: frozen, strict about unknown keys, camelCase in YAML (as in
Kubernetes and the Gateway API: ``serviceAccount``, ``backendRefs``); snake_case in
Python."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel


class Model(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
    )


# DNS-1123 label: what Kubernetes accepts as a service or namespace name, so a mesh.yaml
# written for local mode moves to Kubernetes unchanged.
DnsLabel = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63),
]
PortNumber = Annotated[int, Field(ge=1, le=65535)]
ServiceName = Annotated[
    str,
    StringConstraints(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)?$",
        max_length=127,
    ),
]
"""A service as a workload names it: ``reviews`` (its own namespace) or
``reviews.other``."""

_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """A Gateway API Duration (GEP-2257: ``1h``, ``10s``, ``1m30s``, ``500ms``; up to four
    parts, each up to 5 digits) as seconds. Raises ValueError naming the rule."""
    parts = _DURATION_PART.findall(text)
    if not parts or len(parts) > 4 or "".join(n + u for n, u in parts) != text:
        raise ValueError(
            f"{text!r} is not a duration (write it like 10s, 500ms or 1m30s: "
            "numbers with h, m, s or ms)"
        )
    return sum(int(n) * _DURATION_UNITS[u] for n, u in parts)


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, AfterValidator(_check_duration)]
"""Kept as written (so a document reads back as it was applied); ``parse_duration``
gives seconds."""
