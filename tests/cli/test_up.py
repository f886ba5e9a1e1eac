"""What ``sidemesh up`` says once the mesh is up: every workload that is not ready,
and why in the words of ``sidemesh status``, a sidecar whose config Envoy rejected
included (its processes look ready, as Envoy serves its last good config)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from rich.console import Console

from sidemesh.cli import up
from tests.cli.test_status import HOST_NACK, PORT_NACK, _local, _proxy, _type
from tests.helpers.net import free_port


def _nacked(error: str) -> dict[str, Any]:
    return _type("e2", "e1", {"version": "e2", "error": error, "at": 2.0})


PROXIES = {
    "sidecar~a-1~default": _proxy("sidecar~a-1~default", _nacked(HOST_NACK)),
    "sidecar~b-1~default": _proxy("sidecar~b-1~default", _type("e2", "e2")),
}


def _printed(members: list[dict[str, Any]], proxies: dict[str, dict[str, Any]]) -> str:
    console = Console(width=200, record=True, color_system=None)
    supervisor: Any = SimpleNamespace(local=SimpleNamespace(status=lambda: members))
    state: Any = SimpleNamespace(gateways={})
    up._print_ready(console, state, supervisor, 15014, proxies)
    return console.export_text()


def test_a_sidecar_whose_config_was_rejected_is_not_ready_with_envoys_reason() -> None:
    text = _printed([_local("a-1"), _local("b-1")], PROXIES)
    assert "not ready: a-1: config rejected: malformed IP address: localhost\n" in text
    assert "b-1" not in text
    assert "sidemesh is up." in text


def test_a_proto_constraint_rejection_names_the_field() -> None:
    proxies = {"sidecar~a-1~default": _proxy("sidecar~a-1~default", _nacked(PORT_NACK))}
    assert up.not_ready([_local("a-1")], proxies) == [
        "a-1: config rejected: SocketAddress.PortValue: value must be less than or equal to 65535"
    ]


def test_a_process_that_is_not_ready_is_named_with_where_to_look() -> None:
    stuck = {**_local("b-1"), "ready": False, "error": "sidecar not ready after 60s"}
    assert up.not_ready([_local("a-1"), stuck], PROXIES) == [
        "a-1: config rejected: malformed IP address: localhost",
        "b-1 (sidemesh logs b-1)",
    ]


def test_without_the_control_planes_proxies_the_processes_alone_decide() -> None:
    assert asyncio.run(up._proxies(free_port())) == {}  # nothing answers there
    assert up.not_ready([_local("a-1"), _local("b-1")], {}) == []
    assert "not ready" not in _printed([_local("a-1")], {})


def test_a_nack_of_an_older_version_is_not_a_rejection() -> None:
    accepted = _type("e3", "e3", {"version": "e2", "error": HOST_NACK, "at": 2.0})
    proxies = {"sidecar~a-1~default": _proxy("sidecar~a-1~default", accepted)}
    assert up.not_ready([_local("a-1")], proxies) == []
