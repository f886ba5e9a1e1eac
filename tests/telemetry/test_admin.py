"""Asking many proxies' admin at once, over real sockets on 127.0.0.1: one stuck or
missing proxy costs its own answer, never the others'."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from sidemesh.model.refs import WorkloadRef
from sidemesh.telemetry import AdminAnswer, ProxyAdmin, ask_all
from tests.helpers.net import backend, free_port


def _proxy(name: str, port: int) -> ProxyAdmin:
    return ProxyAdmin(WorkloadRef(name, "default"), "workload", port)


@pytest.fixture
def stuck_port() -> Iterator[int]:
    """A port that takes connections (the kernel's backlog) and never answers: an
    Envoy whose process is stopped looks exactly so."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def _ask(proxies: list[ProxyAdmin], timeout_s: float = 0.5) -> dict[str, AdminAnswer]:
    answers = asyncio.run(ask_all(proxies, "/clusters?format=json", timeout_s))
    return {a.proxy.ref.name: a for a in answers}


def test_one_stuck_proxy_times_out_alone_and_the_others_answer(stuck_port: int) -> None:
    ports = {f"a-{i}": free_port() for i in range(1, 6)}
    with ExitStack() as stack:
        for name, port in ports.items():
            stack.enter_context(backend(name, port))
        proxies = [_proxy(name, port) for name, port in ports.items()]
        proxies.insert(2, _proxy("stuck", stuck_port))
        started = time.monotonic()
        answers = _ask(proxies, timeout_s=0.5)
        took = time.monotonic() - started
    assert took < 1.5, f"{took:.2f}s: the stuck proxy held up the others"
    for name in ports:
        assert answers[name].error is None
        assert answers[name].body["workload"] == name
        assert answers[name].body["path"] == "/clusters?format=json"
    assert answers["stuck"].body is None
    assert answers["stuck"].error == (
        f"no answer from its Envoy admin (http://127.0.0.1:{stuck_port}/clusters?format=json) "
        "within 0.5s"
    )


def test_a_proxy_nothing_listens_for_is_reported_with_its_address() -> None:
    port = free_port()
    (answer,) = _ask([_proxy("gone", port)]).values()
    assert answer.body is None
    assert answer.error is not None
    assert answer.error.startswith(
        f"cannot read its Envoy admin (http://127.0.0.1:{port}/clusters?format=json): "
    )


def test_proxies_sharing_an_admin_port_are_not_asked_and_each_names_the_others() -> None:
    port = free_port()
    with backend("whoever", port):
        answers = _ask([_proxy("a-1", port), _proxy("a-2", port), _proxy("b-1", free_port())])
    assert answers["a-1"].body is None and answers["a-2"].body is None
    assert answers["a-1"].error == (
        f"admin port {port} is also that of a-2.default: the control plane cannot tell "
        f"which Envoy answers on 127.0.0.1:{port} (give each sidecar its own adminPort)"
    )
    assert answers["a-2"].error is not None and "also that of a-1.default" in answers["a-2"].error


def test_an_admin_port_answering_something_else_than_json_is_reported() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(1)

        async def serve_and_ask() -> list[AdminAnswer]:
            loop = asyncio.get_running_loop()

            def answer_text() -> None:
                conn, _ = sock.accept()
                with conn:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")

            served = loop.run_in_executor(None, answer_text)
            answers = await ask_all([_proxy("odd", port)], "/clusters?format=json", 2.0)
            await served
            return answers

        (answer,) = asyncio.run(serve_and_ask())
    assert answer.error is not None
    assert answer.error.startswith(
        f"its Envoy admin (http://127.0.0.1:{port}/clusters?format=json) did not answer JSON"
    )
