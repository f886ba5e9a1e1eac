"""Free ports on 127.0.0.1 for what mesh.yaml leaves unpinned, the same ones again on
every reload so a running process never has to move."""

from __future__ import annotations

import socket


class StickyPorts:
    """A ``PortPicker``: (owner, role) → the port it was given first."""

    def __init__(self) -> None:
        self._given: dict[tuple[str, str], int] = {}

    def __call__(self, owner: str, role: str, pinned: frozenset[int]) -> int:
        key = (owner, role)
        port = self._given.get(key)
        if port is None:
            taken = set(self._given.values()) | pinned
            port = _free_port(taken)
            self._given[key] = port
        return port


def _free_port(taken: set[int]) -> int:
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port
    raise OSError("no free port on 127.0.0.1")
