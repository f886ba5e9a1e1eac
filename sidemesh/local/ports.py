"""Free ports on 127.0.0.1 for what mesh.yaml leaves unpinned, the same ones again on
every reload so a running process never has to move."""

from __future__ import annotations

import socket
from pathlib import Path

from sidemesh.local.runfiles import read_json, write_json


class StickyPorts:
    """A ``PortPicker``: (owner, role) → the port it was given first.

    With ``path``, the choices are kept in that file and read back at start: a control
    plane restarted under running sidecars must give every workload the ports it
    already listens on."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._given: dict[tuple[str, str], int] = {}
        saved = read_json(path) if path is not None else None
        for entry in saved or []:
            self._given[(entry["owner"], entry["role"])] = int(entry["port"])

    def __call__(self, owner: str, role: str, pinned: frozenset[int]) -> int:
        key = (owner, role)
        port = self._given.get(key)
        # A port saved for this role that the file now pins for something else (or
        # reserves) is given up: the pin wins, this role moves.
        if port is None or port in pinned:
            taken = {p for k, p in self._given.items() if k != key} | pinned
            port = free_port(taken)
            self._given[key] = port
            self._save()
        return port

    def _save(self) -> None:
        if self.path is not None:
            write_json(
                self.path,
                [{"owner": o, "role": r, "port": p} for (o, r), p in sorted(self._given.items())],
            )


def free_port(taken: set[int] | frozenset[int] = frozenset()) -> int:
    """A port on 127.0.0.1 that nothing listens on now and that is not in ``taken``."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port
    raise OSError("no free port on 127.0.0.1")
