"""``sidemesh install`` and ``uninstall``: every manifest valid against the real
Kubernetes schemas (``kubernetes-validate``; no API server can run on these machines),
least-privilege RBAC, a Deployment whose arguments the real CLI takes, and applying and
deleting through the Kubernetes API, against the small API server written for the
tests (``tests/helpers/kube_apiserver.py``), through the real client library."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer
import yaml

from sidemesh.cli.main import app
from sidemesh.identity.ca import CertificateAuthority
from sidemesh.kube.install import InstallOptions, install_manifests, object_path
from tests.helpers.kube_apiserver import KubeTestServer
from tests.kube.test_inject import VERSIONS


def _sidemesh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidemesh", *args], capture_output=True, text=True, timeout=60
    )


def _by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        out.setdefault(obj["kind"], []).append(obj)
    return out


@pytest.mark.parametrize("version", VERSIONS)
def test_every_installed_manifest_is_valid_kubernetes(version: str) -> None:
    for obj in install_manifests(InstallOptions(generate_ca=True)):
        kubernetes_validate.validate(obj, version, strict=True)


def test_install_prints_the_whole_control_plane() -> None:
    done = _sidemesh("install", "--namespace", "mesh", "--image", "registry.example/sidemesh:3")
    assert done.returncode == 0, done.stderr
    kinds = _by_kind(list(yaml.safe_load_all(done.stdout)))
    assert set(kinds) == {
        "Namespace",
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    }
    (deployment,) = kinds["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["namespace"] == "mesh"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example/sidemesh:3"
    assert "Secret mesh/sidemesh-ca" in done.stderr  # no CA in the output unless asked


def test_the_deployments_arguments_are_ones_the_control_plane_takes() -> None:
    (deployment,) = _by_kind(install_manifests(InstallOptions()))["Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "controlplane"
    command = typer.main.get_command(app).commands["controlplane"]  # type: ignore[attr-defined]
    context = command.make_context("controlplane", list(args[1:]))
    assert context.params["kubernetes"] is True
    assert context.params["kube_namespace"] == "sidemesh-system"
    assert context.params["ca_host"] == "0.0.0.0"


def test_rbac_is_least_privilege() -> None:
    (role,) = _by_kind(install_manifests(InstallOptions()))["ClusterRole"]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        assert "secrets" not in rule["resources"], (
            "the CA Secret is mounted, never read through the API"
        )
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(
            rule["verbs"]
        )
        if "admissionregistration.k8s.io" in rule["apiGroups"]:
            assert rule["resourceNames"], "only sidemesh's own webhook configurations"
    writes = {
        (r, v)
        for rule in role["rules"]
        for r in rule["resources"]
        for v in rule["verbs"]
        if v not in ("get", "list", "watch")
    }
    assert writes == {
        ("events", "create"),
        ("events", "patch"),
        ("configmaps", "create"),
        ("configmaps", "update"),
        ("tokenreviews", "create"),
        ("mutatingwebhookconfigurations", "patch"),
        ("validatingwebhookconfigurations", "patch"),
    }


def test_a_generated_ca_secret_is_one_the_control_plane_loads(tmp_path: Path) -> None:
    (secret,) = _by_kind(
        install_manifests(InstallOptions(generate_ca=True, trust_domain="example.org"))
    )["Secret"]
    for name, data in secret["data"].items():
        (tmp_path / name).write_bytes(base64.b64decode(data))
    assert "root-key.pem" not in secret["data"], "the root's key stays out of the cluster"
    ca = CertificateAuthority.load(tmp_path, "example.org")
    assert ca.trust_bundle_pem == (tmp_path / "root-cert.pem").read_bytes()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KubeTestServer]:
    server = KubeTestServer(tmp_path / "apiserver").start()
    yield server
    server.stop()


def test_install_and_uninstall_apply_through_the_api(server: KubeTestServer) -> None:
    kubeconfig = str(server.kubeconfig(context="prod"))
    done = _sidemesh("install", "--apply", "--kubeconfig", kubeconfig, "--context", "prod")
    assert done.returncode == 0, done.stderr
    expected = {object_path(o) for o in install_manifests(InstallOptions())}
    assert set(server.applied) == expected
    assert "Deployment sidemesh: applied" in done.stdout
    crd = server.applied[
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/backendpolicies.sidemesh.io"
    ]
    assert crd["spec"]["names"]["kind"] == "BackendPolicy"
    gone = _sidemesh("uninstall", "--apply", "--kubeconfig", kubeconfig, "--context", "prod")
    assert gone.returncode == 0, gone.stderr
    assert server.applied == {}
    lines = gone.stdout.splitlines()
    assert all("CustomResourceDefinition" in line for line in lines[-6:]), "CRDs go last"


def test_install_with_an_unknown_context_says_so() -> None:
    done = _sidemesh("install", "--apply", "--context", "nowhere", "--kubeconfig", "/nonexistent")
    assert done.returncode == 1
    assert "cannot find the cluster" in done.stderr
