"""A real etcd (Debian's ``etcd-server``), started by the test on free ports with its
own data directory, one member or several; stopped (or killed, or frozen) by the test."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.helpers.net import free_port


def etcd_missing() -> str | None:
    return (
        None if shutil.which("etcd") else "needs etcd (Debian etcd-server; make test installs it)"
    )


@dataclass
class EtcdMember:
    name: str
    directory: Path
    host: str = "127.0.0.1"
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    prefix: Sequence[str] = ()
    """A command prefix: ``ip netns exec HOST`` to run the member on another host."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    def start(self, initial_cluster: str, state: str = "new") -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "etcd.log").open("ab")
        self.process = subprocess.Popen(
            [
                *self.prefix,
                "etcd",
                "--name", self.name,
                "--data-dir", str(self.directory / "data"),
                "--listen-client-urls", self.client_url,
                "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", initial_cluster,
                "--initial-cluster-state", state,
                "--initial-cluster-token", "sidemesh-test",
                # Quick to notice a member gone: these tests kill members on purpose.
                "--heartbeat-interval", "100",
                "--election-timeout", "1000",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def healthy(self) -> bool:
        if self.prefix:  # on another host: ask from there
            done = subprocess.run(
                [*self.prefix, "etcdctl", "--endpoints", self.client_url, "endpoint", "health"],
                capture_output=True,
                timeout=10,
            )
            return done.returncode == 0
        try:
            reply = httpx.get(f"{self.client_url}/health", timeout=1, trust_env=False)
        except httpx.HTTPError:
            return False
        return reply.status_code == 200 and '"true"' in reply.text

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def log(self) -> str:
        path = self.directory / "etcd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@dataclass
class EtcdCluster:
    members: list[EtcdMember]

    @classmethod
    def of(cls, directory: Path, hosts: Sequence[tuple[str, Sequence[str]]]) -> EtcdCluster:
        """One member per (address, command prefix)."""
        return cls(
            [
                EtcdMember(f"m{i}", directory / f"m{i}", host, prefix=prefix)
                for i, (host, prefix) in enumerate(hosts)
            ]
        )

    @property
    def endpoints(self) -> str:
        return ",".join(m.client_url for m in self.members)

    def start(self, timeout: float = 30) -> EtcdCluster:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for member in self.members:
            member.start(initial)
        deadline = time.monotonic() + timeout
        while not all(m.healthy() for m in self.members):
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {m.name}\n{m.log()}" for m in self.members)
                raise RuntimeError(f"etcd did not come up:\n{logs}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def single_etcd(directory: Path) -> EtcdCluster:
    return EtcdCluster.of(directory, [("127.0.0.1", ())]).start()
