"""Commands that show things, against a cluster (``--context``): through the API
server's proxy to the control plane's Service, with the kubeconfig's credentials and
CA. The API server is the small one written for the tests
(``tests/helpers/kube_apiserver.py``; no real one can run on these machines); the
control plane behind it is real and watches that cluster."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers.harness import ControlPlaneThread
from tests.helpers.kube_apiserver import KubeTestServer
from tests.kube.test_cluster import plane, server

__all__ = ["plane", "server"]  # fixtures


def _sidemesh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidemesh", *args], capture_output=True, text=True, timeout=60
    )


def test_status_and_proxies_read_a_clusters_control_plane_through_its_api_server(
    plane: ControlPlaneThread, server: KubeTestServer
) -> None:
    server.services["sidemesh-system/http:sidemesh:http-api"] = (
        f"http://127.0.0.1:{plane.control_plane.api_port}"
    )
    kubeconfig = str(server.kubeconfig(context="prod"))
    done = _sidemesh("status", "--context", "prod", "--kubeconfig", kubeconfig, "-o", "json")
    assert done.returncode == 0, done.stderr
    workloads = {w["name"] for w in json.loads(done.stdout)["workloads"]}
    assert "reviews-v1-a" in workloads
    proxies = _sidemesh("proxies", "--context", "prod", "--kubeconfig", kubeconfig, "-o", "json")
    assert proxies.returncode == 0, proxies.stderr
    assert json.loads(proxies.stdout)["proxies"] == []


def test_a_cluster_without_the_control_plane_says_so(server: KubeTestServer) -> None:
    kubeconfig = str(server.kubeconfig(context="prod"))
    done = _sidemesh("stat", "--context", "prod", "--kubeconfig", kubeconfig)
    assert done.returncode == 1
    assert (
        "no endpoints available for service sidemesh-system/http:sidemesh:http-api" in done.stderr
    )


def test_an_unknown_context_says_so() -> None:
    done = _sidemesh("status", "--context", "nowhere", "--kubeconfig", "/nonexistent")
    assert done.returncode == 1
    assert "cannot find the cluster (context 'nowhere')" in done.stderr
