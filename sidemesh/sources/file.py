"""mesh.yaml as a source: load it, watch it, and hand each good version on.

A bad edit is logged with the file, field and reason, and nothing changes: the
last good state keeps serving until the file is fixed. A file is read only once it
has stopped changing, so a half-written save is never taken for an edit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from sidemesh.errors import ConfigError, Problem
from sidemesh.model import MeshState, PortPicker, load_mesh_file, parse_mesh_document

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2
"""How often the file's stat is read. Polling (not inotify) also catches editors that
replace the file and bind mounts that update in place."""
SETTLE_S = 0.1
"""A changed file is read once its stat has stayed the same for one poll and its last
write is at least this old: an editor or ``cp`` in the middle of writing is waited out."""

Signature = tuple[int, int, int]


class FileSource:
    def __init__(
        self,
        path: Path,
        on_state: Callable[[MeshState], None],
        ports: PortPicker | None = None,
        fallback: Callable[[], MeshState | None] | None = None,
        reserved_ports: Mapping[int, str] | None = None,
    ) -> None:
        """``ports`` is given in local mode: it picks the ports the file leaves out.
        ``fallback`` gives the last state this mesh ran, if it knows one: a control
        plane restarted while the file is bad serves that instead of refusing to start.
        ``reserved_ports``: the control plane's own (port → what), which no workload
        may take."""
        self.path = path
        self.on_state = on_state
        self.ports = ports
        self.fallback = fallback
        self.reserved_ports = reserved_ports
        self.state: MeshState | None = None
        self.rejected = 0
        """How many edits were refused since start."""
        self.last_error: ConfigError | None = None
        self._signature: Signature | None = None
        self._seen: Signature | None = None
        """The signature of the previous poll: a change is read once it holds still."""

    def load_initial(self) -> MeshState:
        """Load the file once; raises ``ConfigError`` if it is bad (and no fallback)."""
        last_good = self.fallback() if self.fallback is not None else None
        self._signature = self._seen = self._wait_settled()
        try:
            state = load_mesh_file(
                self.path,
                version=1,
                ports=self.ports,
                reserved_ports=self.reserved_ports,
                # A restart must not be the way round the rule for edits.
                require_workloads=bool(last_good is not None and last_good.workloads),
            )
        except ConfigError as exc:
            if last_good is None:
                raise
            self.rejected += 1
            self.last_error = exc
            log.error(
                "%s is not valid; serving the mesh as it last ran until it is fixed:\n%s",
                self.path,
                exc,
            )
            state = last_good
        self.state = state
        self.on_state(state)
        return state

    def check(self) -> bool:
        """Reload if the file changed and has settled. Returns True if a new state
        was accepted."""
        return self._accept(self._load_if_changed())

    async def watch(self, interval: float = POLL_INTERVAL_S) -> None:
        while True:
            await asyncio.sleep(interval)
            # Loading may resolve host names: off the event loop, so a slow resolver
            # never holds up xDS or the API. Accepting (and publishing) stays on it.
            self._accept(await asyncio.to_thread(self._load_if_changed))

    def _load_if_changed(self) -> MeshState | ConfigError | None:
        """The file's next state, or why it is refused; None if there is nothing new
        (unchanged, or still being written)."""
        signature = self._stat()
        seen, self._seen = self._seen, signature
        if signature == self._signature or signature != seen or not _settled(signature):
            return None
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            text = None
            unreadable = exc
        if self._stat() != signature:
            return None  # written to while read: wait for it to settle again
        self._signature = signature
        previous = self.state
        version = (previous.version if previous else 0) + 1
        if text is None:
            return ConfigError(
                str(self.path), [Problem("", f"cannot read file: {unreadable.strerror}")]
            )
        try:
            return parse_mesh_document(
                text,
                str(self.path),
                version,
                ports=self.ports,
                reserved_ports=self.reserved_ports,
                require_workloads=bool(previous is not None and previous.workloads),
            )
        except ConfigError as exc:
            return exc

    def _accept(self, loaded: MeshState | ConfigError | None) -> bool:
        if loaded is None:
            return False
        if isinstance(loaded, ConfigError):
            self.rejected += 1
            self.last_error = loaded
            log.error(
                "rejected an edit of %s; still serving mesh version %s:\n%s",
                self.path,
                self.state.version if self.state else "none",
                loaded,
            )
            return False
        state, previous = loaded, self.state
        if previous is not None:
            state = state.reuse_unchanged(previous)
            _warn_if_most_removed(previous, state, self.path)
        self.state = state
        self.last_error = None
        log.info("loaded %s as mesh version %d", self.path, state.version)
        self.on_state(state)
        return True

    def _wait_settled(self, timeout: float = 2.0) -> Signature | None:
        """The file's signature once it holds still (at start, when an editor may be
        in the middle of a save); after ``timeout``, whatever it is then."""
        deadline = time.monotonic() + timeout
        signature = self._stat()
        while time.monotonic() < deadline:
            if _settled(signature):
                time.sleep(SETTLE_S)
                again = self._stat()
                if again == signature:
                    break
                signature = again
            else:
                time.sleep(SETTLE_S)
                signature = self._stat()
        return signature

    def _stat(self) -> Signature | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)


def _settled(signature: Signature | None) -> bool:
    if signature is None:
        return True  # gone: loading reports "cannot read file", which is what happened
    age_ns = time.time_ns() - signature[0]
    # A time in the future (clock skew, a network file system) says nothing about
    # when it was written: polls that see the same signature twice decide alone.
    return not 0 <= age_ns < SETTLE_S * 1e9


def _warn_if_most_removed(previous: MeshState, state: MeshState, path: Path) -> None:
    """An edit that removes more than half of the workloads is allowed, but it is the
    kind of edit an operator wants to see in the log next to the outage it caused."""
    removed = sorted(
        f"{name}.{namespace}"
        for name, namespace in previous.workloads
        if (name, namespace) not in state.workloads
    )
    if removed and len(removed) * 2 > len(previous.workloads):
        log.warning(
            "mesh version %d from %s removes %d of %d workloads: %s",
            state.version,
            path,
            len(removed),
            len(previous.workloads),
            ", ".join(removed),
        )
