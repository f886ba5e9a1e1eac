"""The host file ``sidemesh join`` reads: which control planes to use and the workloads
this host runs, in mesh.yaml's words (a ``workloads:`` entry each)::

    controlPlane: 10.0.0.1:15010,10.0.0.2:15010
    etcd: http://10.0.0.1:2379          # register the workloads (optional)
    stateDir: /var/lib/sidemesh         # tokens/ and ca/root-cert.pem
    workloads:
      - {name: reviews-1, service: reviews, address: 10.0.0.7, port: 9080, appPort: 19080}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from sidemesh.errors import ConfigError, Problem
from sidemesh.model.base import DnsLabel, Model, PortNumber
from sidemesh.model.registry import DEFAULT_LEASE_TTL_S, DEFAULT_PREFIX


class HostWorkload(Model):
    name: DnsLabel
    service: DnsLabel
    namespace: DnsLabel = "default"
    address: str
    port: PortNumber
    """Where its sidecar takes the service's calls (on ``address``)."""
    app_port: PortNumber
    """Where its app listens, on 127.0.0.1."""
    outbound_port: PortNumber = 15001
    labels: dict[str, str] = Field(default_factory=dict)
    service_account: DnsLabel | None = None

    def registration(self) -> dict[str, Any]:
        """As mesh.yaml's ``workloads:`` entry (what the registry holds)."""
        entry: dict[str, Any] = {
            "name": self.name,
            "service": self.service,
            "address": self.address,
            "port": self.port,
            "appPort": self.app_port,
            "labels": dict(self.labels),
            "sidecar": {"outboundPort": self.outbound_port},
        }
        if self.service_account:
            entry["serviceAccount"] = self.service_account
        return entry


class HostFile(Model):
    control_plane: str
    """ADS addresses, ``HOST:PORT``, comma-separated for replicas."""
    ca_address: str | None = None
    """The CAs, ``HOST:PORT,...``; each control plane's host, port 15012, if left out."""
    state_dir: Path = Path(".sidemesh/controlplane")
    """Where the workloads' tokens (``tokens/``) and the mesh root (``ca/``) are, on a
    host that shares the control plane's; else give ``tokenDir`` and ``caBundle``."""
    token_dir: Path | None = None
    """The workloads' bootstrap tokens, ``<workload>.<namespace>.token`` each (made by
    ``sidemesh token create`` and copied here); ``<stateDir>/tokens`` if left out."""
    ca_bundle: Path | None = None
    """The mesh root certificate; ``<stateDir>/ca/root-cert.pem`` if left out."""
    etcd: str | None = None
    """Register every workload in this etcd cluster (``http://HOST:PORT,...``)."""
    etcd_prefix: str = DEFAULT_PREFIX
    lease_ttl: int = Field(default=DEFAULT_LEASE_TTL_S, ge=2)
    socket_root: Path | None = None
    """A directory each workload gets a private (0700) directory under, for its SDS
    and admin sockets; a new temporary one if left out (keep it short)."""
    concurrency: int = Field(default=1, ge=1)
    """Envoy worker threads per workload."""
    workloads: tuple[HostWorkload, ...] = Field(min_length=1)


def load_host_file(path: Path) -> HostFile:
    """Raises ``ConfigError`` naming the file, the field and the reason."""
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(source, [Problem("", f"cannot read file: {exc.strerror}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(source, [Problem("", f"not YAML: {exc}")]) from exc
    try:
        host = HostFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            source,
            [
                Problem(".".join(str(p) for p in error["loc"]), error["msg"])
                for error in exc.errors()
            ],
        ) from exc
    names = [(w.name, w.namespace) for w in host.workloads]
    duplicates = sorted({f"{n}.{ns}" for n, ns in names if names.count((n, ns)) > 1})
    if duplicates:
        raise ConfigError(source, [Problem("workloads", f"listed twice: {', '.join(duplicates)}")])
    return host
