"""mesh.yaml as a source: load it, watch it, and report each good version of it.

A bad edit is refused with the file, field and reason, and nothing changes: the last
good snapshot keeps serving until the file is fixed. A file is read only once it has
stopped changing, so a half-written save is never taken for an edit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from sidemesh.errors import ConfigError, Problem
from sidemesh.model import MeshState, PortPicker, load_mesh_file, parse_mesh_document
from sidemesh.sources.aggregate import Feed
from sidemesh.sources.protocol import Snapshot

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2
"""How often the file's stat is read. Polling (not inotify) also catches editors that
replace the file and bind mounts that update in place."""
SETTLE_S = 0.1
"""A changed file is read once its stat has stayed the same for one poll and its last
write is at least this old: an editor or ``cp`` in the middle of writing is waited out."""
UNNUMBERED = 0
"""The version the loader is given: a snapshot's means nothing, the aggregator numbers."""

Signature = tuple[tuple[int, int, int], ...]
"""(mtime, size, inode) of mesh.yaml and of each file it includes."""


class FileSource:
    """The ``Source`` of mesh.yaml: its snapshot is the whole file as the model's
    loader validated it."""

    def __init__(
        self,
        path: Path,
        feed: Feed,
        ports: PortPicker | None = None,
        fallback: Callable[[], MeshState | None] | None = None,
        reserved_ports: Mapping[int, str] | None = None,
        poll_interval: float = POLL_INTERVAL_S,
    ) -> None:
        """``feed``: where snapshots and refusals go (``Aggregator.feed``).
        ``ports`` is given in local mode: it picks the ports the file leaves out.
        ``fallback`` gives the last state this mesh ran, if it knows one: a control
        plane restarted while the file is bad serves that instead of refusing to start.
        ``reserved_ports``: the control plane's own (port → what), which no workload
        may take."""
        self.path = path
        self.feed = feed
        self.ports = ports
        self.fallback = fallback
        self.reserved_ports = reserved_ports
        self.poll_interval = poll_interval
        self._signature: Signature | None = None
        self._seen: Signature | None = None
        """The signature of the previous poll: a change is read once it holds still."""

    @property
    def rejected(self) -> int:
        """How many edits were refused since start (kept by the feed)."""
        return self.feed.rejected

    @property
    def last_error(self) -> ConfigError | None:
        """Why the latest edit was refused; None once one is accepted (kept by the feed)."""
        return self.feed.last_error

    async def load_initial(self) -> Snapshot:
        return self.load()

    def load(self) -> Snapshot:
        """Load the file once and report it; raises ``ConfigError`` if it is bad (and
        there is no fallback)."""
        last_good = self.fallback() if self.fallback is not None else None
        self._signature = self._seen = self._wait_settled()
        try:
            snapshot = load_mesh_file(
                self.path,
                version=UNNUMBERED,
                ports=self.ports,
                reserved_ports=self.reserved_ports,
                # A restart must not be the way round the rule for edits.
                require_workloads=bool(last_good is not None and last_good.workloads),
            )
        except ConfigError as exc:
            if last_good is None:
                raise
            # Served first, then refused: the error stays on record while it serves.
            self.feed.offer(last_good)
            self.feed.refuse(
                exc, f"{self.path} at start, serving the mesh as it last ran until it is fixed"
            )
            return last_good
        for warning in snapshot.warnings:
            log.warning("%s", warning)
        self.feed.offer(snapshot)
        return snapshot

    def check(self) -> bool:
        """Reload if the file changed and has settled. Returns True if a new snapshot
        was reported."""
        return self._report(self._load_if_changed())

    async def watch(self, interval: float | None = None) -> None:
        while True:
            await asyncio.sleep(self.poll_interval if interval is None else interval)
            # Loading may resolve host names: off the event loop, so a slow resolver
            # never holds up xDS or the API. Reporting (and publishing) stays on it.
            self._report(await asyncio.to_thread(self._load_if_changed))

    def _load_if_changed(self) -> Snapshot | ConfigError | None:
        """The file's next snapshot, or why it is refused; None if there is nothing
        new (unchanged, or still being written)."""
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
        previous = self.feed.snapshot
        if text is None:
            return ConfigError(
                str(self.path), [Problem("", f"cannot read file: {unreadable.strerror}")]
            )
        try:
            return parse_mesh_document(
                text,
                str(self.path),
                UNNUMBERED,
                ports=self.ports,
                reserved_ports=self.reserved_ports,
                require_workloads=bool(previous is not None and previous.workloads),
            )
        except ConfigError as exc:
            return exc

    def _report(self, loaded: Snapshot | ConfigError | None) -> bool:
        if loaded is None:
            return False
        if isinstance(loaded, ConfigError):
            self.feed.refuse(loaded, f"an edit of {self.path}")
            return False
        for warning in loaded.warnings:
            # Accepted, but worth a look: an unresolved backendRef, a conflict.
            log.warning("%s", warning)
        self.feed.offer(loaded)
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
        """mesh.yaml's stat, and that of each file it included last time it loaded: an
        edit of an included policy file is an edit of the mesh."""
        snapshot = self.feed.snapshot
        included = snapshot.included_files if snapshot is not None else ()
        parts = [_stat_one(self.path), *(_stat_one(Path(f)) for f in included)]
        if parts[0] is None:
            return None
        return tuple(p or (0, -1, 0) for p in parts)


def _stat_one(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _settled(signature: Signature | None) -> bool:
    if signature is None:
        return True  # gone: loading reports "cannot read file", which is what happened
    now = time.time_ns()
    # A time in the future (clock skew, a network file system) says nothing about
    # when it was written: polls that see the same signature twice decide alone.
    return all(not 0 <= now - mtime < SETTLE_S * 1e9 for mtime, _, _ in signature)
