"""Asking many proxies' admin at once, over real Unix sockets (an Envoy admin listens on
one): one stuck or missing proxy costs its own answer, never the others'."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from sidemesh.model.refs import WorkloadRef
from sidemesh.telemetry import AdminAnswer, ProxyAdmin, ask_all
from tests.helpers.net import backend


def _proxy(name: str, path: Path) -> ProxyAdmin:
    return ProxyAdmin(WorkloadRef(name, "default"), "workload", str(path))


@pytest.fixture
def sockets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a short path: Unix socket paths are limited to about 100 bytes."""
    return tmp_path_factory.mktemp("s", numbered=True)


@pytest.fixture
def stuck_socket(sockets: Path) -> Iterator[Path]:
    """A socket that takes connections (the kernel's backlog) and never answers: an
    Envoy whose process is stopped looks exactly so."""
    path = sockets / "stuck.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        sock.listen(16)
        yield path


def _ask(proxies: list[ProxyAdmin], timeout_s: float = 0.5) -> dict[str, AdminAnswer]:
    answers = asyncio.run(ask_all(proxies, "/clusters?format=json", timeout_s))
    return {a.proxy.ref.name: a for a in answers}


def test_one_stuck_proxy_times_out_alone_and_the_others_answer(
    sockets: Path, stuck_socket: Path
) -> None:
    paths = {f"a-{i}": sockets / f"a-{i}.sock" for i in range(1, 6)}
    with ExitStack() as stack:
        for name, path in paths.items():
            stack.enter_context(backend(name, path))
        proxies = [_proxy(name, path) for name, path in paths.items()]
        proxies.insert(2, _proxy("stuck", stuck_socket))
        started = time.monotonic()
        answers = _ask(proxies, timeout_s=0.5)
        took = time.monotonic() - started
    assert took < 1.5, f"{took:.2f}s: the stuck proxy held up the others"
    for name in paths:
        assert answers[name].error is None
        assert answers[name].body["workload"] == name
        assert answers[name].body["path"] == "/clusters?format=json"
    assert answers["stuck"].body is None
    assert answers["stuck"].error == (
        f"no answer from its Envoy admin (unix:{stuck_socket}/clusters?format=json) within 0.5s"
    )


def test_a_proxy_nothing_listens_for_is_reported_with_its_socket(sockets: Path) -> None:
    path = sockets / "gone.sock"
    (answer,) = _ask([_proxy("gone", path)]).values()
    assert answer.body is None
    assert answer.error is not None
    assert answer.error.startswith(
        f"cannot read its Envoy admin (unix:{path}/clusters?format=json): "
    )


def test_proxies_sharing_an_admin_socket_are_not_asked_and_each_names_the_others(
    sockets: Path,
) -> None:
    path = sockets / "shared.sock"
    with backend("whoever", path):
        answers = _ask(
            [_proxy("a-1", path), _proxy("a-2", path), _proxy("b-1", sockets / "b.sock")]
        )
    assert answers["a-1"].body is None and answers["a-2"].body is None
    assert answers["a-1"].error == (
        f"admin socket {path} is also that of a-2.default: the control plane cannot tell "
        "which Envoy answers there (give each sidecar its own --socket-dir)"
    )
    assert answers["a-2"].error is not None and "also that of a-1.default" in answers["a-2"].error


def test_an_admin_answering_something_else_than_json_is_reported(sockets: Path) -> None:
    path = sockets / "odd.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        sock.listen(1)

        async def serve_and_ask() -> list[AdminAnswer]:
            loop = asyncio.get_running_loop()

            def answer_text() -> None:
                conn, _ = sock.accept()
                with conn:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")

            served = loop.run_in_executor(None, answer_text)
            answers = await ask_all([_proxy("odd", path)], "/clusters?format=json", 2.0)
            await served
            return answers

        (answer,) = asyncio.run(serve_and_ask())
    assert answer.error is not None
    assert answer.error.startswith(
        f"its Envoy admin (unix:{path}/clusters?format=json) did not answer JSON"
    )
