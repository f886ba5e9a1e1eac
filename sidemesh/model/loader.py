"""Loading mesh.yaml into a ``MeshState``, with errors that name the file, the field
path and the reason, and report every problem at once."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sidemesh.errors import ConfigError, Problem
from sidemesh.model.addresses import resolve_addresses
from sidemesh.model.checks import check_document, check_ports
from sidemesh.model.mesh import MeshDocument
from sidemesh.model.policy.checks import check_policies
from sidemesh.model.policy.documents import Policies, RawDocument, parse_policies
from sidemesh.model.policy.gateway import gateway_proxies
from sidemesh.model.resolve import PortPicker, resolve
from sidemesh.model.state import MeshState, service_key


def load_mesh_file(
    path: Path | str,
    version: int = 1,
    *,
    ports: PortPicker | None = None,
    require_workloads: bool = False,
    reserved_ports: Mapping[int, str] | None = None,
) -> MeshState:
    """Read and validate a mesh.yaml. Raises ``ConfigError`` naming ``path``.
    ``require_workloads``, ``reserved_ports``: see ``parse_mesh_document``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [Problem("", f"cannot read file: {exc.strerror}")]) from exc
    return parse_mesh_document(
        text,
        source,
        version,
        ports=ports,
        require_workloads=require_workloads,
        reserved_ports=reserved_ports,
        base_dir=Path(path).parent,
    )


def parse_mesh_document(
    text: str,
    source: str,
    version: int = 1,
    *,
    ports: PortPicker | None = None,
    require_workloads: bool = False,
    reserved_ports: Mapping[int, str] | None = None,
    base_dir: Path | None = None,
) -> MeshState:
    """Validate mesh.yaml text; ``source`` is the name used in error messages.

    The first YAML document is the compact local form (mesh, services, workloads,
    gateways, ``include``); every further document, and every document of the files
    ``include`` names (relative to ``base_dir``, globs allowed), is a policy in
    Kubernetes form (``HTTPRoute``, ``BackendPolicy``, ...).

    ``ports`` is given in local mode (``sidemesh up``): it picks a free port for each
    one the file leaves out, and every workload must have a command.
    ``require_workloads`` is set for an edit of a mesh that has workloads: a document
    that leaves ``workloads`` out would stop them all, which is far more often a
    half-saved or mangled file than the operator's wish, so it takes ``workloads: []``.
    ``reserved_ports`` (port → what holds it, such as "the control plane's xDS port")
    are refused to workloads and gateways on the control plane's host, and never
    picked.

    Workload and gateway addresses become IP literals: a host name is resolved here,
    once (see ``addresses``)."""
    first, raw_policies = split_documents(text, source)
    return parse_documents(
        first,
        raw_policies,
        source,
        version,
        ports=ports,
        require_workloads=require_workloads,
        reserved_ports=reserved_ports,
        base_dir=base_dir,
    )


def split_documents(text: str, source: str) -> tuple[dict[str, Any], list[RawDocument]]:
    """mesh.yaml's text as its first document (the compact local form, ``{}`` when
    the file holds only policies) and its further documents (policies), variables
    expanded. Raises ``ConfigError`` for an empty file, bad YAML or a first document
    that is not a mapping."""
    if not text.strip():
        # An editor that truncates before it writes, or a failed copy, leaves an empty
        # file; read as an empty mesh it would stop every workload without a word.
        raise ConfigError(
            source,
            [Problem("", "the file is empty; to run no workloads, write `workloads: []`")],
        )
    documents = [d for d in _parse_yaml(_expand_variables(text, source), source) if d is not None]
    if not documents:
        raise ConfigError(
            source,
            [
                Problem(
                    "",
                    "the file holds no document (only comments?); "
                    "to run no workloads, write `workloads: []`",
                )
            ],
        )
    first = documents[0]
    if isinstance(first, dict) and "kind" in first:
        first = {}  # only policies: the mesh itself is empty
    else:
        documents = documents[1:]
    if not isinstance(first, dict):
        raise ConfigError(source, [Problem("", "the top level must be a mapping")])
    offset = 1 if first else 0
    raw_policies = [
        RawDocument(f"document {i + 1 + offset}", doc) for i, doc in enumerate(documents)
    ]
    return first, raw_policies


def read_mesh_documents(path: Path) -> tuple[dict[str, Any], list[RawDocument]]:
    """A mesh.yaml's first document and every policy document, those of the files it
    includes too (with ``include`` then removed): what ``sidemesh apply`` writes to a
    registry. Raises ``ConfigError`` naming ``path``; it does not validate them
    (``parse_documents`` does)."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [Problem("", f"cannot read file: {exc.strerror}")]) from exc
    first, raw_policies = split_documents(text, source)
    patterns = first.pop("include", None) or ()
    if not isinstance(patterns, list | tuple) or not all(isinstance(p, str) for p in patterns):
        raise ConfigError(source, [Problem("include", "a list of file names or globs")])
    included, _ = _included(patterns, path.parent, source)
    return first, [*raw_policies, *included]


def parse_documents(
    first: Mapping[str, Any],
    raw_policies: Sequence[RawDocument],
    source: str,
    version: int = 1,
    *,
    ports: PortPicker | None = None,
    require_workloads: bool = False,
    reserved_ports: Mapping[int, str] | None = None,
    base_dir: Path | None = None,
) -> MeshState:
    """Validate documents already parsed: ``first`` in the compact local form,
    ``raw_policies`` in Kubernetes form, each named by its ``where`` in problems.
    ``parse_mesh_document`` reads them from mesh.yaml's text; the Kubernetes source
    builds them from the API server's objects. Raises ``ConfigError`` naming
    ``source``; the keyword arguments are ``parse_mesh_document``'s."""
    if require_workloads and "workloads" not in first:
        raise ConfigError(
            source,
            [
                Problem(
                    "workloads",
                    "missing: this edit would stop every workload; "
                    "to stop them all, write `workloads: []`",
                )
            ],
        )
    try:
        document = MeshDocument.model_validate(first)
    except ValidationError as exc:
        raise ConfigError(source, _problems_from_pydantic(exc.errors())) from exc
    included, included_files = _included(document.include, base_dir, source)
    raw_policies = [*raw_policies, *included]
    parsed = parse_policies(raw_policies, document.mesh.default_namespace, _problems_from_pydantic)
    problems = list(check_document(document, local=ports is not None)) + parsed.problems
    proxies, gateway_problems = gateway_proxies(document, parsed.policies, parsed.where)
    document = document.model_copy(update={"gateways": document.gateways + proxies})
    problems += gateway_problems
    document, address_problems = resolve_addresses(document)
    problems += address_problems
    if problems:
        raise ConfigError(source, problems)
    resolved = resolve(document, ports, reserved=frozenset(reserved_ports or ()))
    problems = list(check_ports(resolved, reserved_ports))
    if problems:
        raise ConfigError(source, problems)
    state = _to_state(resolved.document, version, parsed.policies)
    found = check_policies(
        parsed.policies,
        parsed.where,
        state.services,
        {key: state.workloads_of(key) for key in state.services},
        state.mesh.trust_domain,
    )
    if found.errors:
        raise ConfigError(source, found.errors)
    return replace(
        state,
        warnings=tuple(f"{source}: {w}" for w in found.warnings),
        included_files=included_files,
    )


def _included(
    patterns: Sequence[str], base_dir: Path | None, source: str
) -> tuple[list[RawDocument], tuple[str, ...]]:
    """The policy documents of the files ``include`` names, in the order named (a glob's
    files in name order), and those files (a file source watches them too)."""
    base = base_dir or Path(source).parent
    out: list[RawDocument] = []
    files: list[str] = []
    problems: list[Problem] = []
    for i, pattern in enumerate(patterns):
        is_glob = any(c in pattern for c in "*?[")
        paths = sorted(base.glob(pattern)) if is_glob else [base / pattern]
        if is_glob:
            # Watched too: adding or removing a file there changes the directory.
            files.append(str((base / pattern).parent))
        # A glob may match nothing (a directory of optional policies, empty for now);
        # a file named outright must be there.
        for path in paths:
            files.append(str(path))
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                problems.append(Problem(f"include[{i}]", f"cannot read {path}: {exc.strerror}"))
                continue
            name = str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
            docs = _parse_yaml(_expand_variables(text, name), name)
            out += [
                RawDocument(f"{name} document {j + 1}", doc)
                for j, doc in enumerate(docs)
                if doc is not None
            ]
    if problems:
        raise ConfigError(source, problems)
    return out, tuple(files)


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_variables(text: str, source: str) -> str:
    """``${NAME}`` and ``${NAME:-default}`` take the environment's value, as in a shell."""
    problems: list[Problem] = []

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found is not None:
            return found
        if default is not None:
            return default
        line = text.count("\n", 0, match.start()) + 1
        problems.append(
            Problem(f"line {line}", f"${{{name}}} is not set (write ${{{name}:-default}})")
        )
        return ""

    expanded = _VARIABLE.sub(value, text)
    if problems:
        raise ConfigError(source, problems)
    return expanded


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping with the same key twice (plain YAML keeps
    the last one silently, which hides typos)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,
)


def _parse_yaml(text: str, source: str) -> list[Any]:
    """Every YAML document of ``text`` (``---`` separates them)."""
    try:
        # A SafeLoader subclass: no arbitrary objects.
        return list(yaml.load_all(text, Loader=_UniqueKeyLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(source, [Problem(where, f"invalid YAML: {exc.problem}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(source, [Problem("", f"invalid YAML: {exc}")]) from exc


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _problems_from_pydantic(errors: list[Any]) -> list[Problem]:
    # A list whose items failed also reports itself "too short" (it counts only the
    # valid items); the item errors say what is really wrong, so drop that echo.
    locs = [tuple(e["loc"]) for e in errors]
    return [
        _problem_from_pydantic(e)
        for e in errors
        if not (
            e["type"] == "too_short"
            and any(
                len(other) > len(e["loc"]) and other[: len(e["loc"])] == tuple(e["loc"])
                for other in locs
            )
        )
    ]


RETIRED_FIELDS = {
    "adminPort": "Envoy's admin has no port any more: it listens on a Unix socket only "
    "the mesh's user can open (admin.sock in the sidecar's socket directory); remove "
    "this field",
}
"""Fields mesh.yaml once had, with what to do instead of an "unknown field"."""


def _problem_from_pydantic(error: Any) -> Problem:
    path = _format_loc(tuple(error["loc"]))
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "enum":
        allowed = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        return Problem(path, f"{error['input']!r} is not one of {allowed}")
    if kind == "extra_forbidden":
        if error["loc"][-1] in RETIRED_FIELDS:
            return Problem(path, RETIRED_FIELDS[error["loc"][-1]])
        return Problem(path, "unknown field (check its spelling and indentation)")
    if kind == "missing":
        return Problem(path, "required field is missing")
    if kind == "string_pattern_mismatch":
        return Problem(
            path,
            f"{error['input']!r} is not a valid name "
            "(lowercase letters, digits and '-', starting and ending with a letter or digit)",
        )
    return Problem(path, str(error["msg"]))


def _to_state(doc: MeshDocument, version: int, policies: Policies) -> MeshState:
    """``doc`` is resolved: namespaces, ports and accounts are filled in."""
    return MeshState(
        version=version,
        mesh=doc.mesh,
        services={service_key(s): s for s in doc.services},
        workloads={(w.name, w.namespace or ""): w for w in doc.workloads},
        gateways={(g.name, g.namespace or ""): g for g in doc.gateways},
        policies=policies,
    )
