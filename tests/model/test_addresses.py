"""Addresses become IP literals at load, and the control plane's own ports are
nobody else's: a problem is refused with its field path, never sent to an Envoy."""

from __future__ import annotations

import socket
import textwrap
import threading
import time
from typing import Any

import pytest

from sidemesh.errors import ConfigError
from sidemesh.model import MeshState, parse_mesh_document
from sidemesh.model import addresses as addresses_module

SERVICES = "services: [{name: a, ports: [{port: 80}]}]\n"
RESERVED = {15010: "the control plane's xDS port", 15014: "the control plane's API port"}


def _one_workload(address: str, **fields: Any) -> str:
    """One workload of service ``a`` at ``address``; ``fields`` (YAML text) add to or
    replace its other fields, None leaves one out."""
    spec = {"name": "w", "service": "a", "address": repr(address), "port": 1, "appPort": 2}
    spec.update(fields)
    inline = ", ".join(f"{k}: {v}" for k, v in spec.items() if v is not None)
    return SERVICES + f"workloads:\n  - {{{inline}}}\n"


def _load(text: str, **kwargs: Any) -> MeshState:
    return parse_mesh_document(textwrap.dedent(text), "mesh.yaml", **kwargs)


def _errors(text: str, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        _load(text, **kwargs)
    return str(info.value)


def _address(state: MeshState, name: str = "w") -> str:
    workload = state.workload(name, "default")
    assert workload is not None
    return workload.address


@pytest.mark.parametrize("written", ["localhost", "LocalHost", "localhost."])
def test_localhost_means_127_0_0_1(written: str) -> None:
    assert _address(_load(_one_workload(written))) == "127.0.0.1"


@pytest.mark.parametrize(
    ("written", "held"),
    [
        ("::1", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("fd00::10", "fd00::10"),
        ("10.1.2.3", "10.1.2.3"),
    ],
)
def test_an_ip_literal_is_kept_in_its_canonical_form(written: str, held: str) -> None:
    assert _address(_load(_one_workload(written))) == held


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("999.1.1.1", "'999.1.1.1' is not a valid IPv4 address"),
        ("10.0.0", "'10.0.0' is not a valid IPv4 address"),
        ("010.0.0.1", "'010.0.0.1' is not a valid IPv4 address"),
        ("[::1]", "'[::1]' is not a valid IPv6 address (write it without brackets or port)"),
        ("10.0.0.1:8080", "'10.0.0.1:8080' is not a valid IPv6 address"),
        ("fe80::1%eth0", "'fe80::1%eth0': a zone (%eth0) is not supported by Envoy"),
        ("my host", "'my host' is neither an IP address nor a host name"),
        ("0.0.0.0", "'0.0.0.0' means any address: give the one callers reach the workload on"),
        ("224.0.0.1", "'224.0.0.1' is a multicast address"),
    ],
)
def test_an_address_that_is_not_an_ip_literal_is_refused_without_a_lookup(
    written: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_lookups(*args: object, **kwargs: object) -> object:
        raise AssertionError(f"looked up {args[0]!r}")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookups)
    assert _errors(_one_workload(written)).startswith(f"mesh.yaml: workloads[0].address: {reason}")


def test_a_host_name_is_resolved_once_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def fake_getaddrinfo(host: str, *args: object, **kwargs: object) -> list[Any]:
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.9.8.7", 0))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    state = _load(
        _one_workload("reviews.internal", replicas=2, port=None, appPort=None, command="app"),
        ports=_LowestPorts(),
    )
    assert {w.address for w in state.workloads.values()} == {"10.9.8.7"}
    # Once for both replicas (other threads of a test run may look up other names).
    assert asked.count("reviews.internal") == 1


def test_an_unresolvable_host_name_is_refused_naming_it() -> None:
    started = time.monotonic()
    message = _errors(_one_workload("no-such-host.invalid"))
    print(f"failed lookup took {time.monotonic() - started:.3f}s")
    assert message.startswith(
        "mesh.yaml: workloads[0].address: cannot resolve host name 'no-such-host.invalid': "
    )
    assert message.endswith("(give an IP address, or fix the name)")


def test_a_resolver_that_does_not_answer_holds_the_load_for_a_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()

    def hanging(*args: object, **kwargs: object) -> object:
        release.wait(30)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    monkeypatch.setattr(addresses_module, "RESOLVE_TIMEOUT_S", 0.3)
    text = SERVICES + textwrap.dedent(
        """
        workloads:
          - {name: w1, service: a, address: one.example, port: 1, appPort: 2}
          - {name: w2, service: a, address: two.example, port: 3, appPort: 4,
             sidecar: {outboundPort: 5}}
        """
    )
    started = time.monotonic()
    try:
        message = _errors(text)
    finally:
        release.set()
    took = time.monotonic() - started
    assert took < 1.0, f"two hanging lookups held the load {took:.2f}s"
    assert message == (
        "mesh.yaml: workloads[0].address: host name 'one.example' did not resolve within 0.3s "
        "(is DNS reachable? an IP address needs no lookup)\n"
        "mesh.yaml: workloads[1].address: host name 'two.example' did not resolve within 0.3s "
        "(is DNS reachable? an IP address needs no lookup)"
    )


def test_address_problems_are_reported_with_the_other_problems() -> None:
    message = _errors(
        SERVICES
        + "workloads:\n"
        + "  - {name: w1, service: nope, address: 999.1.1.1, port: 1, appPort: 2}\n"
        + "gateways:\n"
        + "  - {name: gw, address: '[::]', port: 8080, routes: [{service: a}]}\n"
    )
    assert message.splitlines() == [
        "mesh.yaml: workloads[0].service: 'nope' is not a service in namespace 'default' "
        "(services: a.default)",
        "mesh.yaml: workloads[0].address: '999.1.1.1' is not a valid IPv4 address "
        "(four numbers 0-255, no leading zeros)",
        "mesh.yaml: gateways[0].address: '[::]' is not a valid IPv6 address "
        "(write it without brackets or port)",
    ]


def test_a_gateway_may_listen_on_every_address() -> None:
    state = _load(
        SERVICES + "gateways: [{name: gw, address: 0.0.0.0, port: 8080, routes: [{service: a}]}]\n"
    )
    gateway = state.gateway("gw", "default")
    assert gateway is not None and gateway.address == "0.0.0.0"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"port": 15010},
            "workloads[0].port: port 15010 on 127.0.0.5 clashes with the control plane's "
            "xDS port: pick another",
        ),
        ({"appPort": 15014}, "workloads[0].appPort: port 15014 on 127.0.0.5 clashes with"),
        ({"sidecar": "{outboundPort: 15014}"}, "workloads[0].sidecar.outboundPort: port 15014"),
        (
            {"upstreams": "[{service: a, localPort: 15010}]"},
            "workloads[0].upstreams[0].localPort: port 15010",
        ),
    ],
)
def test_a_port_of_the_control_plane_is_refused_on_its_host(
    fields: dict[str, Any], expected: str
) -> None:
    assert expected in _errors(_one_workload("127.0.0.5", **fields), reserved_ports=RESERVED)


def test_a_gateway_on_every_address_may_not_take_a_port_of_the_control_plane() -> None:
    text = (
        SERVICES + "gateways: [{name: gw, address: 0.0.0.0, port: 15010, routes: [{service: a}]}]\n"
    )
    assert _errors(text, reserved_ports=RESERVED) == (
        "mesh.yaml: gateways[0].port: port 15010 on 0.0.0.0 clashes with the control plane's "
        "xDS port: pick another"
    )


def test_a_workload_on_another_host_may_use_the_control_planes_port_numbers() -> None:
    state = _load(_one_workload("10.1.2.3", port=15010), reserved_ports=RESERVED)
    workload = state.workload("w", "default")
    assert workload is not None and workload.ports[0].port == 15010


class _LowestPorts:
    """A port picker that hands out the lowest port from 15000 up that it may, and
    remembers which ports it was told to avoid."""

    def __init__(self) -> None:
        self.given: dict[tuple[str, str], int] = {}
        self.avoided: set[int] = set()

    def __call__(self, owner: str, role: str, taken: frozenset[int]) -> int:
        self.avoided |= taken
        if (owner, role) not in self.given:
            used = set(self.given.values()) | taken
            self.given[(owner, role)] = next(p for p in range(15000, 16000) if p not in used)
        return self.given[(owner, role)]


def test_the_port_picker_never_picks_a_reserved_port() -> None:
    picker = _LowestPorts()
    text = SERVICES + "workloads:\n  - {name: w, service: a, command: app, replicas: 4}\n"
    state = _load(text, ports=picker, reserved_ports=RESERVED)
    picked = {
        port
        for w in state.workloads.values()
        for port in (
            w.ports[0].port,
            w.ports[0].app_port,
            w.sidecar.outbound_port,
        )
    }
    assert len(picked) == 12 and 15009 in picked and 15011 in picked
    assert not picked & set(RESERVED)
    assert set(RESERVED) <= picker.avoided
