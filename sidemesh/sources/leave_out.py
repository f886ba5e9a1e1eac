"""A snapshot made of many independent objects (a cluster's, a registry's), where one
bad object must not stop the rest: parse them all, blame each problem on the object it
points into, leave those objects out, and parse again.

Only a problem that points into no object (a clash between two of them that neither
owns, the mesh settings) refuses the snapshot as a whole."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sidemesh.errors import ConfigError, Problem
from sidemesh.model import MeshState, parse_documents
from sidemesh.model.policy.documents import RawDocument

K = TypeVar("K", bound=Hashable)
MAX_BAD_OBJECTS = 1000
"""More bad objects than this and the snapshot is refused, not whittled down."""


@dataclass
class Documents(Generic[K]):
    """``first`` in the compact local form, ``policies`` in Kubernetes form, and the
    object each came from."""

    first: dict[str, Any]
    policies: list[RawDocument]
    origin: dict[str, K] = field(default_factory=dict)
    """``services[3]``, ``workloads[0]`` or a policy's ``where`` → its object."""

    def object_of(self, problem_path: str) -> K | None:
        """The object a problem's path points into, if it points into one."""
        head = problem_path.split(".", 1)[0]
        if head in self.origin:
            return self.origin[head]
        for where, ref in self.origin.items():
            if problem_path == where or problem_path.startswith(where + " "):
                return ref
        return None


@dataclass
class Outcome(Generic[K]):
    state: MeshState | None
    """None: refused as a whole, for ``refusal``'s problems."""
    left_out: dict[K, tuple[str, ...]]
    refusal: ConfigError | None = None


def parse_leaving_out(make: Callable[[tuple[K, ...]], Documents[K]], source: str) -> Outcome[K]:
    """``make(skip)`` gives the documents of every object but those in ``skip``."""
    bad: dict[K, list[str]] = {}
    while True:
        docs = make(tuple(bad))
        try:
            state = parse_documents(docs.first, docs.policies, source)
        except ConfigError as exc:
            unplaced: list[Problem] = []
            for problem in exc.problems:
                ref = docs.object_of(problem.path)
                if ref is None:
                    unplaced.append(problem)
                else:
                    bad.setdefault(ref, []).append(str(problem))
            if unplaced or len(bad) > MAX_BAD_OBJECTS:
                refusal = ConfigError(source, unplaced or exc.problems)
                return Outcome(None, _frozen(bad), refusal)
            continue
        return Outcome(state, _frozen(bad))


def _frozen(bad: dict[K, list[str]]) -> dict[K, tuple[str, ...]]:
    return {ref: tuple(reasons) for ref, reasons in bad.items()}
