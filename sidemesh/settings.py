"""Settings, grouped, each with its reason. Read from flags, else ``SIDEMESH_*``
environment variables, else the defaults here. Nothing is created at import time."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

LOOPBACK = "127.0.0.1"


class ControlPlaneSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    config: Path
    """The mesh.yaml to serve and watch."""
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
