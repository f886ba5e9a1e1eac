"""``/v1/local/workloads``: the typed shape of what ``sidemesh up`` runs (OpenAPI
documents it), as its supervisor last wrote it; read by ``sidemesh status`` and the
dashboard's workloads page."""

from __future__ import annotations

from sidemesh.api.response import ApiModel


class ProcessOut(ApiModel):
    state: str
    """``starting``, ``running``, ``restarting`` or ``stopped``."""
    pid: int | None
    """None once stopped."""
    restarts: int
    last_exit: int | None
    """Its last exit status (negative: the signal that ended it)."""
    last_exit_at: float | None
    """When it last exited (Unix time)."""
    log: str
    """The file its output goes to."""


class LocalMemberOut(ApiModel):
    name: str
    namespace: str
    kind: str
    """``workload`` (an app and its sidecar) or ``gateway`` (a sidecar alone)."""
    service: str | None
    """A workload's service; None for a gateway."""
    version: str | None
    """A workload's ``version`` label."""
    ready: bool
    error: str | None
    """Why it is not running, if it failed to start."""
    app: ProcessOut | None
    """The application; None for a gateway."""
    sidecar: ProcessOut
    """Its sidecar agent (which runs its Envoy)."""


class LocalRunOut(ApiModel):
    supervisor: int | None = None
    """The pid of ``sidemesh up``'s supervisor (left out until it has written its
    status)."""
    control_plane: ProcessOut | None
    """This control plane's own process, as the supervisor runs it."""
    workloads: list[LocalMemberOut]
    """Workloads and gateways, by name."""
