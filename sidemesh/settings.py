"""Settings, grouped, each with its reason. Read from flags, else ``SIDEMESH_*``
environment variables, else the defaults here. Nothing is created at import time."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

LOOPBACK = "127.0.0.1"
DEFAULT_CA_PORT = 15012
DEFAULT_RUNTIME_DIR = Path(".sidemesh")
DEFAULT_STATE_DIR = DEFAULT_RUNTIME_DIR / "controlplane"


class ControlPlaneSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    config: Path | None = None
    """The mesh.yaml to serve and watch (optional where etcd or a cluster holds the mesh)."""
    etcd: str | None = None
    """etcd endpoints (``http://HOST:PORT,...``) holding the mesh (``sidemesh apply``)
    and the workloads agents registered; every replica reading it serves the same mesh."""
    etcd_prefix: str = "/sidemesh"
    """The key prefix of the mesh in etcd."""
    xds_host: str = LOOPBACK
    """Address the ADS server binds. Loopback by default: local mode needs no more."""
    xds_port: int = Field(default=15010, ge=0, le=65535)
    """ADS (gRPC) port; 0 picks a free one."""
    api_host: str = LOOPBACK
    """Address of the HTTP API."""
    api_port: int = Field(default=15014, ge=0, le=65535)
    """HTTP API port; 0 picks a free one."""
    poll_interval_s: float = Field(default=0.2, gt=0)
    """How often mesh.yaml is checked for edits."""
    ca_port: int = Field(default=DEFAULT_CA_PORT, ge=0, le=65535)
    """HTTPS port of the certificate signing endpoint."""
    ca_host: str | None = None
    """Address of the certificate signing endpoint; ``api_host``'s if None. In a
    cluster every pod must reach it, while the read-only API may stay on loopback."""
    state_dir: Path = DEFAULT_STATE_DIR
    """The CA (root kept across restarts) and bootstrap tokens live here."""
    cert_lifetime_s: float = Field(default=3600.0, gt=0)
    """Lifetime of workload certificates: short, since agents renew them."""
    telemetry_interval_s: float = Field(default=5.0, ge=0)
    """How often every proxy's stats are scraped into golden signals; 0 turns it off."""
    on_demand: bool = True
    """Sidecars on delta xDS hold only the services they use, learning each at its
    first call; False sends every proxy the whole mesh."""
    kubernetes: bool = False
    """Also watch a Kubernetes cluster (Services, meshed Pods, policy objects), accept
    its pods' service-account tokens, and serve the injection webhook."""
    kube_context: str | None = None
    """The kubeconfig context; kubectl's current one if None (in a pod: the pod's)."""
    kubeconfig: Path | None = None
    """The kubeconfig file; kubectl's (``$KUBECONFIG``, ``~/.kube/config``) if None."""
    kube_namespace: str = "sidemesh-system"
    """The namespace the control plane runs in (its Service's name is in the webhook's
    certificate)."""
    webhook_host: str = "0.0.0.0"
    """Address of the injection webhook (HTTPS): the API server calls it from outside."""
    webhook_port: int = Field(default=15017, ge=0, le=65535)

    def own_ports(self) -> dict[int, str]:
        """The ports the control plane listens on (those fixed in advance), each with
        what holds it: no workload may take one."""
        ports = {
            self.xds_port: "the control plane's xDS port",
            self.api_port: "the control plane's API port",
            self.ca_port: "the control plane's CA port",
        }
        return {port: what for port, what in ports.items() if port != 0}
