"""Workload and gateway addresses: what mesh.yaml may say, and the IP literal the
``MeshState`` holds instead.

A workload's address reaches every caller's Envoy in its service's endpoint list, and
Envoy rejects that whole list if one address is not an IP literal: one workload written
as ``localhost`` or ``999.1.1.1`` would freeze the endpoints of its service for every
caller. So the state holds only IP literals. ``localhost`` means 127.0.0.1 (what the
local mode runs on, whatever /etc/hosts says); another host name is resolved once, at
load, and the address it had then is used until the next load; text that only looks
like an IP literal (``999.1.1.1``, ``10.0.0``) is refused without a lookup, since a
resolver may well answer for it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sidemesh.errors import Problem
from sidemesh.model.mesh import MeshDocument

LOCALHOST = "127.0.0.1"

RESOLVE_TIMEOUT_S = 2.0
"""Longest one load waits for all its host-name lookups together. The file source
loads on the control plane's event loop, so a resolver that never answers must not
hold it for long; a lookup still running then is abandoned (its daemon thread ends
when the resolver gives up) and reported as a problem of the file."""

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 1123 host name: dot-separated labels of letters, digits and '-'.
_HOST_NAME = re.compile(
    r"^(?=.{1,253}\.?$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\.?$"
)


def parse_ip(text: str) -> IpAddress | None:
    """``text`` as an IP literal Envoy accepts, or None."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    # Envoy parses endpoint addresses with inet_pton, which knows no "%eth0" zone.
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        return None
    return ip


def is_address(text: str) -> bool:
    """``text`` is an IP literal or a host name (not looked up)."""
    return parse_ip(text) is not None or _not_a_host_name(text) is None


def is_loopback(address: str) -> bool:
    """``localhost`` or a loopback address: reachable from this host only."""
    if address == "localhost":
        return True
    ip = parse_ip(address)
    return ip is not None and ip.is_loopback


@dataclass(frozen=True)
class _Use:
    """One address field of the document: where, what it says, and whether callers
    connect to it (a workload's endpoint) or it is only bound (a gateway's listener)."""

    path: str
    text: str
    endpoint: bool


def resolve_addresses(doc: MeshDocument) -> tuple[MeshDocument, list[Problem]]:
    """``doc`` with every workload and gateway address an IP literal, and a problem for
    each address that is not and cannot become one."""
    uses = [_Use(f"workloads[{i}].address", w.address, True) for i, w in enumerate(doc.workloads)]
    uses += [_Use(f"gateways[{i}].address", g.address, False) for i, g in enumerate(doc.gateways)]
    literal: dict[str, str | _Failed] = {}
    for use in uses:
        ip = parse_ip(use.text)
        if ip is not None:
            literal[use.text] = str(ip)  # canonical: "0:0::1" and "::1" are one address
        elif use.text.lower().rstrip(".") == "localhost":
            literal[use.text] = LOCALHOST
        elif (reason := _not_a_host_name(use.text)) is not None:
            literal[use.text] = _Failed(reason)
    answers = look_up(sorted({u.text for u in uses} - set(literal)), RESOLVE_TIMEOUT_S)
    answers.update(literal)
    problems: list[Problem] = []
    resolved: dict[str, str] = {}
    for use in uses:
        answer = answers[use.text]
        if isinstance(answer, _Failed):
            problems.append(Problem(use.path, answer.reason))
            continue
        resolved[use.path] = answer
        reason = _not_an_endpoint(use.text, answer) if use.endpoint else None
        if reason is not None:
            problems.append(Problem(use.path, reason))
    workloads = tuple(
        w.model_copy(update={"address": resolved.get(f"workloads[{i}].address", w.address)})
        for i, w in enumerate(doc.workloads)
    )
    gateways = tuple(
        g.model_copy(update={"address": resolved.get(f"gateways[{i}].address", g.address)})
        for i, g in enumerate(doc.gateways)
    )
    return doc.model_copy(update={"workloads": workloads, "gateways": gateways}), problems


def _not_a_host_name(text: str) -> str | None:
    """Why ``text`` is neither an IP literal nor a host name worth looking up, or None."""
    if not text:
        return "the address is empty (give an IP address or a host name)"
    if "%" in text and parse_ip(text.split("%", 1)[0]) is not None:
        return f"{text!r}: a zone ({text[text.index('%') :]}) is not supported by Envoy"
    if ":" in text:
        return f"{text!r} is not a valid IPv6 address (write it without brackets or port)"
    last_label = text.rstrip(".").rsplit(".", 1)[-1]
    if re.fullmatch(r"[0-9.]+", text) or last_label.isdigit():
        # No top-level domain is all digits (RFC 3696): this was meant as an IPv4
        # address, and asking a resolver could only turn a typo into a surprise.
        return f"{text!r} is not a valid IPv4 address (four numbers 0-255, no leading zeros)"
    if not _HOST_NAME.match(text):
        return f"{text!r} is neither an IP address nor a host name"
    return None


def _not_an_endpoint(text: str, address: str) -> str | None:
    ip = ipaddress.ip_address(address)
    shown = repr(text) if text == address else f"{text!r} ({address})"
    if ip.is_unspecified:
        return f"{shown} means any address: give the one callers reach the workload on"
    if ip.is_multicast:
        return f"{shown} is a multicast address: callers cannot connect to it"
    return None


@dataclass(frozen=True)
class _Failed:
    reason: str


def look_up(names: Iterable[str], timeout: float) -> dict[str, str | _Failed]:
    """Each host name's first address (in the resolver's order of preference), all
    looked up at once and waited for at most ``timeout`` seconds in total."""
    answers: dict[str, str | _Failed] = {}
    threads = []
    for name in names:
        thread = threading.Thread(
            target=_look_up_one, args=(name, answers), name=f"resolve {name}", daemon=True
        )
        thread.start()
        threads.append((name, thread))
    deadline = time.monotonic() + timeout
    for _, thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    out: dict[str, str | _Failed] = {}
    for name, _ in threads:
        out[name] = answers.get(name) or _Failed(
            f"host name {name!r} did not resolve within {timeout:g}s "
            "(is DNS reachable? an IP address needs no lookup)"
        )
    return out


def _look_up_one(name: str, answers: dict[str, str | _Failed]) -> None:
    try:
        found = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except OSError as exc:
        answers[name] = _Failed(
            f"cannot resolve host name {name!r}: {exc.strerror or exc} "
            "(give an IP address, or fix the name)"
        )
        return
    for _family, _type, _proto, _canon, sockaddr in found:
        ip = parse_ip(str(sockaddr[0]))
        if ip is not None:
            answers[name] = str(ip)
            return
    answers[name] = _Failed(f"host name {name!r} resolved to no IP address")
