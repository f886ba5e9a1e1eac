"""The traffic redirect a pod's init container installs (iptables, in the pod's network
namespace): every inbound TCP connection to the sidecar's inbound port, every outbound
one to its outbound port, except the proxy's own (by its UID) and the ports excluded by
annotation. As ``iptables-restore`` input, so it is applied at once or not at all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sidemesh.model import INBOUND_CAPTURE_PORT as INBOUND_CAPTURE_PORT  # re-exported

OUTBOUND_CAPTURE_PORT = 15001
PROXY_UID = 1337
MESH_PORTS = (15000, 15001, 15006, 15020, 15021, 15090)
"""The sidecar's own ports: never redirected to itself."""


@dataclass(frozen=True)
class Redirect:
    inbound_port: int = INBOUND_CAPTURE_PORT
    outbound_port: int = OUTBOUND_CAPTURE_PORT
    proxy_uid: int = PROXY_UID
    exclude_inbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()
    exclude_outbound_cidrs: tuple[str, ...] = ()

    def rules(self) -> str:
        """The nat table, for ``iptables-restore --noflush``."""
        lines = [
            "*nat",
            ":SIDEMESH_INBOUND - [0:0]",
            ":SIDEMESH_IN_REDIRECT - [0:0]",
            ":SIDEMESH_OUTPUT - [0:0]",
            ":SIDEMESH_REDIRECT - [0:0]",
            f"-A SIDEMESH_IN_REDIRECT -p tcp -j REDIRECT --to-ports {self.inbound_port}",
            f"-A SIDEMESH_REDIRECT -p tcp -j REDIRECT --to-ports {self.outbound_port}",
            "-A PREROUTING -p tcp -j SIDEMESH_INBOUND",
        ]
        for port in _unique((*MESH_PORTS, *self.exclude_inbound_ports)):
            lines.append(f"-A SIDEMESH_INBOUND -p tcp --dport {port} -j RETURN")
        lines += [
            "-A SIDEMESH_INBOUND -p tcp -j SIDEMESH_IN_REDIRECT",
            "-A OUTPUT -p tcp -j SIDEMESH_OUTPUT",
            # The proxy's own connections leave as they are: no loop through itself.
            f"-A SIDEMESH_OUTPUT -m owner --uid-owner {self.proxy_uid} -j RETURN",
            f"-A SIDEMESH_OUTPUT -m owner --gid-owner {self.proxy_uid} -j RETURN",
            "-A SIDEMESH_OUTPUT -d 127.0.0.1/32 -j RETURN",
        ]
        for port in _unique(self.exclude_outbound_ports):
            lines.append(f"-A SIDEMESH_OUTPUT -p tcp --dport {port} -j RETURN")
        for cidr in _unique(self.exclude_outbound_cidrs):
            lines.append(f"-A SIDEMESH_OUTPUT -d {cidr} -j RETURN")
        lines += ["-A SIDEMESH_OUTPUT -j SIDEMESH_REDIRECT", "COMMIT", ""]
        return "\n".join(lines)


def _unique(values: Sequence[int | str]) -> list[int | str]:
    return list(dict.fromkeys(values))
