"""Children that die with their parent, even when the parent is SIGKILLed or OOM-killed.

Linux sends a chosen signal to a process when its parent dies (``PR_SET_PDEATHSIG``).
``setpriv`` (util-linux, on every Debian) sets it and then execs the command, so the
process keeps its pid and nothing runs between fork and exec in the parent: setting it
in a ``preexec_fn`` instead would fork a process that holds gRPC's threads."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence

log = logging.getLogger(__name__)


def die_with_parent(argv: Sequence[str], signal_name: str = "TERM") -> list[str]:
    """``argv`` run so that the kernel sends it SIG``signal_name`` when its parent dies.
    Without ``setpriv`` the command runs as is, and a killed parent may leave it behind
    (``sidemesh down`` still finds it from the run files)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        log.warning("setpriv not found: %s will outlive its parent if that is killed", argv[0])
        return list(argv)
    return [setpriv, "--pdeathsig", signal_name, "--", *argv]
