"""mesh.yaml as a source: load it, watch it, and hand each good version on.

A bad edit is logged with the file, field and reason, and nothing changes: the
last good state keeps serving until the file is fixed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from sidemesh.errors import ConfigError
from sidemesh.model import MeshState, PortPicker, load_mesh_file

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2
"""How often the file's stat is read. Polling (not inotify) also catches editors that
replace the file and bind mounts that update in place."""


class FileSource:
    def __init__(
        self,
        path: Path,
        on_state: Callable[[MeshState], None],
        ports: PortPicker | None = None,
    ) -> None:
        """``ports`` is given in local mode: it picks the ports the file leaves out."""
        self.path = path
        self.on_state = on_state
        self.ports = ports
        self.state: MeshState | None = None
        self.rejected = 0
        """How many edits were refused since start."""
        self.last_error: ConfigError | None = None
        self._signature: tuple[int, int, int] | None = None

    def load_initial(self) -> MeshState:
        """Load the file once; raises ``ConfigError`` if it is bad."""
        self._signature = self._stat()
        state = load_mesh_file(self.path, version=1, ports=self.ports)
        self.state = state
        self.on_state(state)
        return state

    def check(self) -> bool:
        """Reload if the file changed. Returns True if a new state was accepted."""
        signature = self._stat()
        if signature == self._signature:
            return False
        self._signature = signature
        version = (self.state.version if self.state else 0) + 1
        try:
            state = load_mesh_file(self.path, version=version, ports=self.ports)
        except ConfigError as exc:
            self.rejected += 1
            self.last_error = exc
            log.error(
                "rejected an edit of %s; still serving mesh version %s:\n%s",
                self.path,
                self.state.version if self.state else "none",
                exc,
            )
            return False
        if self.state is not None:
            state = state.reuse_unchanged(self.state)
        self.state = state
        self.last_error = None
        log.info("loaded %s as mesh version %d", self.path, state.version)
        self.on_state(state)
        return True

    async def watch(self, interval: float = POLL_INTERVAL_S) -> None:
        while True:
            await asyncio.sleep(interval)
            self.check()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)
