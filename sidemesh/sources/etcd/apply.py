"""``sidemesh apply -f mesh.yaml --etcd URL``: validate a mesh.yaml exactly as the
control plane loads it, then write it into etcd in one transaction: its first
document at ``<prefix>/mesh`` and each policy document under ``<prefix>/documents/``,
deleting the documents an earlier apply wrote that the file no longer holds. A bad
file writes nothing. Registrations (the agents') are never touched."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aetcd

from sidemesh.model import MeshState, parse_documents, read_mesh_documents
from sidemesh.model.registry import Layout


@dataclass
class Plan:
    """What an apply writes: key → JSON value, and the keys it deletes."""

    state: MeshState
    puts: dict[bytes, bytes] = field(default_factory=dict)
    deletes: list[bytes] = field(default_factory=list)


def plan(path: Path, layout: Layout) -> Plan:
    """The writes that put ``path`` into etcd; raises ``ConfigError`` (naming the file,
    the field and the reason) if the file is not a valid mesh."""
    first, raw = read_mesh_documents(path)
    state = parse_documents(first, raw, str(path), base_dir=path.parent)
    default_namespace = state.mesh.default_namespace
    out = Plan(state)
    out.puts[layout.mesh] = _json(first)
    for document in raw:
        content: Any = document.content
        meta = content.get("metadata") or {}
        key = layout.document(
            str(content["kind"]), str(meta.get("namespace") or default_namespace), str(meta["name"])
        )
        out.puts[key] = _json(content)
    return out


async def apply(client: aetcd.Client, planned: Plan, layout: Layout) -> tuple[list[str], int]:
    """Write ``planned`` in one transaction; the keys deleted and etcd's new revision."""
    existing = await client.get_prefix(layout.documents)
    stale = sorted(kv.key for kv in existing if kv.key not in planned.puts)
    planned.deletes = stale
    success = [client.transactions.put(key, value) for key, value in planned.puts.items()]
    success += [client.transactions.delete(key) for key in stale]
    _, responses = await client.transaction(compare=[], success=success, failure=[])
    revision = max(r.response_put.header.revision for r in responses if r.HasField("response_put"))
    return [k.decode() for k in stale], int(revision)


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
