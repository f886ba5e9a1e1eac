"""``sidemesh status`` on what the API answers: a sidecar whose config Envoy rejected
is not ready, and says why in Envoy's words."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from rich.console import Console

from sidemesh.cli import status as status_view
from sidemesh.cli.api_client import ApiUnreachable

# As Envoy words a NACK of an endpoint list with a port out of range: the resource's
# dump, then a chain of "caused by" down to the field.
PORT_NACK = (
    'goo.gle/debugproto  \ncluster_name: "outbound|9080||b.default"\nendpoints {\n'
    "  lb_endpoints {\n    endpoint {\n      address {\n        socket_address {\n"
    '          address: "127.0.0.1"\n          port_value: 70000\n        }\n      }\n'
    "    }\n  }\n}\n: Proto constraint validation failed (ClusterLoadAssignmentValidationError"
    ".Endpoints[0]: embedded message failed validation | caused by LocalityLbEndpoints"
    "ValidationError.LbEndpoints[0]: embedded message failed validation | caused by "
    "LbEndpointValidationError.Endpoint: embedded message failed validation | caused by "
    "EndpointValidationError.Address: embedded message failed validation | caused by "
    "AddressValidationError.SocketAddress: embedded message failed validation | caused by "
    "SocketAddressValidationError.PortValue: value must be less than or equal to 65535)"
)
HOST_NACK = (
    "malformed IP address: localhost. Consider setting resolver_name or setting cluster "
    "type to 'STRICT_DNS' or 'LOGICAL_DNS'"
)

STATE = {
    "version": 3,
    "services": [
        {"name": "a", "namespace": "default", "ports": [{"port": 8080, "protocol": "http"}]},
        {"name": "b", "namespace": "default", "ports": [{"port": 9080, "protocol": "http"}]},
    ],
    "workloads": [
        {
            "name": name,
            "namespace": "default",
            "service": name[0],
            "labels": {},
            "identity": f"spiffe://test.local/ns/default/sa/{name[0]}",
        }
        for name in ("a-1", "b-1")
    ],
    "gateways": [],
}


def _type(sent: str, acked: str, nack: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "sentVersion": sent,
        "ackedVersion": acked,
        "ackedStateVersion": 3,
        "synced": sent == acked,
        "nacks": 1 if nack else 0,
        "pushes": 2,
        "lastNack": nack,
    }


def _proxy(node: str, endpoints: dict[str, Any]) -> dict[str, Any]:
    types = {t: _type("v1", "v1") for t in ("clusters", "listeners", "routes")}
    return {
        "node": node,
        "xdsMode": "delta",
        "connected": True,
        "connectedAt": 1.0,
        "stateVersion": 3,
        "synced": all(t["synced"] for t in [*types.values(), endpoints]),
        "types": {**types, "endpoints": endpoints},
        "certificate": {"identity": "spiffe://x", "expiresInSeconds": 3500.0},
    }


def _local(name: str) -> dict[str, Any]:
    process = {"state": "running", "restarts": 0, "lastExit": None}
    return {
        "name": name,
        "namespace": "default",
        "kind": "workload",
        "ready": True,
        "error": None,
        "app": process,
        "sidecar": process,
    }


def _api(a1_endpoints: dict[str, Any]) -> dict[str, Any]:
    return {
        "/v1/state": STATE,
        "/v1/proxies": {
            "meshVersion": 3,
            "proxies": [
                _proxy("sidecar~a-1~default", a1_endpoints),
                _proxy("sidecar~b-1~default", _type("e2", "e2")),
            ],
        },
        "/v1/local/workloads": {"workloads": [_local("a-1"), _local("b-1")]},
    }


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the fake control plane answers, by path; a test changes it in place."""
    answers: dict[str, Any] = {}

    def get_json(base: str, path: str) -> Any:
        if path not in answers:
            raise ApiUnreachable(f"404 {path}")
        return copy.deepcopy(answers[path])

    monkeypatch.setattr(status_view, "get_json", get_json)
    return answers


def _rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in data["workloads"]}


def _table(data: dict[str, Any]) -> str:
    console = Console(width=160, record=True, color_system=None)
    status_view.render(data, console)
    return console.export_text()


def test_a_rejected_config_makes_the_workload_not_ready_with_envoys_reason(
    api: dict[str, Any],
) -> None:
    nack = {"version": "e2", "error": PORT_NACK, "at": 2.0}
    api.update(_api(_type("e2", "e1", nack)))
    data = status_view.gather("http://cp")
    rows = _rows(json.loads(json.dumps(data)))  # what `-o json` prints
    assert rows["a-1"]["ready"] is False
    assert rows["a-1"]["reason"] == (
        "config rejected: SocketAddress.PortValue: value must be less than or equal to 65535"
    )
    assert rows["a-1"]["configRejected"] == {
        "type": "endpoints",
        "version": "e2",
        "error": PORT_NACK,
    }
    assert rows["b-1"]["ready"] is True and rows["b-1"]["reason"] is None
    table = _table(data)
    a1_line = next(line for line in table.splitlines() if "a-1" in line)
    assert "config rejected: SocketAddress.PortValue: value must be less than or equal" in a1_line
    assert "synced" in next(line for line in table.splitlines() if "b-1" in line)


def test_envoys_reason_is_cut_to_its_first_sentence(api: dict[str, Any]) -> None:
    api.update(_api(_type("e2", "e1", {"version": "e2", "error": HOST_NACK, "at": 2.0})))
    rows = _rows(status_view.gather("http://cp"))
    assert rows["a-1"]["reason"] == "config rejected: malformed IP address: localhost"


def test_a_nack_of_an_older_version_is_not_a_rejection_of_the_current_one(
    api: dict[str, Any],
) -> None:
    nack = {"version": "e2", "error": HOST_NACK, "at": 2.0}
    api.update(_api(_type("e3", "e3", nack)))  # e3, sent after the NACK, was accepted
    rows = _rows(status_view.gather("http://cp"))
    assert rows["a-1"]["ready"] is True and rows["a-1"]["configRejected"] is None
    api.update(_api(_type("e3", "e1", nack)))  # e3 is on its way
    rows = _rows(status_view.gather("http://cp"))
    assert rows["a-1"]["reason"] is None and rows["a-1"]["synced"] is False


def test_outside_local_mode_a_rejection_still_says_not_ready(api: dict[str, Any]) -> None:
    api.update(_api(_type("e2", "e1", {"version": "e2", "error": HOST_NACK, "at": 2.0})))
    del api["/v1/local/workloads"]
    rows = _rows(status_view.gather("http://cp"))
    assert rows["a-1"]["ready"] is False
    assert rows["b-1"]["ready"] is None  # no processes to judge by


def test_a_long_reason_is_cut_to_fit_a_table() -> None:
    reason = status_view.short_error("x" * 300)
    assert len(reason) == status_view.ERROR_WIDTH and reason.endswith("…")


def _endpoints(health: dict[str, str], silent: dict[str, str] | None = None) -> dict[str, Any]:
    """``/v1/endpoints`` with one health line per workload, and the callers that did not
    answer, with why."""
    callers = [
        {"caller": f"{name}.default", "kind": "workload", "admin": "", "answered": True}
        for name in ("a-1", "b-1")
        if name not in (silent or {})
    ]
    callers += [
        {"caller": f"{name}.default", "kind": "workload", "answered": False, "error": error}
        for name, error in (silent or {}).items()
    ]
    return {
        "meshVersion": 3,
        "callers": callers,
        "endpoints": [],
        "workloads": [
            {
                "name": name,
                "namespace": "default",
                "health": line,
                "callers": ["a-1.default", "b-1.default"],
                "ejectedBy": ["a-1.default"] if line.startswith("ejected") else [],
                "failingHealthCheckBy": [],
                "degradedBy": [],
                "awaitingHealthCheckBy": [],
            }
            for name, line in health.items()
        ],
    }


def test_each_workload_shows_its_health_as_the_callers_see_it(api: dict[str, Any]) -> None:
    api.update(_api(_type("e2", "e2")))
    ejected = "ejected by 1 of 2 callers (outlier detection)"
    api["/v1/endpoints"] = _endpoints({"a-1": "healthy", "b-1": ejected})
    data = status_view.gather("http://cp")
    rows = _rows(json.loads(json.dumps(data)))
    assert rows["b-1"]["health"] == ejected
    assert rows["b-1"]["endpointHealth"] == {
        "callers": ["a-1.default", "b-1.default"],
        "ejectedBy": ["a-1.default"],
        "failingHealthCheckBy": [],
        "degradedBy": [],
        "awaitingHealthCheckBy": [],
    }
    assert rows["a-1"]["health"] == "healthy"
    assert data["proxiesNotAnswering"] == []
    table = _table(data)
    assert ejected in next(line for line in table.splitlines() if "b-1" in line)
    assert "healthy" in next(line for line in table.splitlines() if "a-1" in line)
    assert "did not" not in table


def test_a_proxy_that_did_not_answer_is_named_under_the_table(api: dict[str, Any]) -> None:
    api.update(_api(_type("e2", "e2")))
    stuck = "no answer from its Envoy admin (http://127.0.0.1:21004/clusters?format=json) within 1s"
    api["/v1/endpoints"] = _endpoints({"a-1": "healthy", "b-1": "healthy"}, {"a-1": stuck})
    data = status_view.gather("http://cp")
    assert data["proxiesNotAnswering"] == [{"proxy": "a-1.default", "error": stuck}]
    lines = _table(data).splitlines()
    assert lines[-2:] == [
        "health counts only the callers whose Envoy answered; 1 did not:",
        f"  a-1.default: {stuck}",
    ]


def test_a_control_plane_without_endpoint_health_leaves_the_column_empty(
    api: dict[str, Any],
) -> None:
    api.update(_api(_type("e2", "e2")))  # no /v1/endpoints
    data = status_view.gather("http://cp")
    assert {row["health"] for row in data["workloads"]} == {None}
    row = next(line for line in _table(data).splitlines() if "b-1" in line)
    assert row.split("│")[7].strip() == "-"
