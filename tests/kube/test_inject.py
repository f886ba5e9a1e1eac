"""Sidecar injection: which pods get it, and that every manifest it writes is valid
Kubernetes, checked with ``kubernetes-validate`` against the real schemas of the two
newest Kubernetes versions it knows (no API server can run on these machines)."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest

from sidemesh.kube.inject import (
    INIT_CONTAINER,
    PROXY_CONTAINER,
    STATUS_ANNOTATION,
    InjectConfig,
    decide,
    inject_manifest,
    injected,
    patch,
)
from sidemesh.kube.redirect import Redirect

VERSIONS = ("1.36.0", "1.37.0")
CONFIG = InjectConfig(image="registry.example/sidemesh:1.0")


def _pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reviews-1", "namespace": "shop", "labels": {"app": "reviews"}},
        "spec": {
            "serviceAccountName": "reviews",
            "containers": [
                {"name": "app", "image": "reviews:1", "ports": [{"containerPort": 9080}]}
            ],
            **spec,
        },
    }


def _template(kind: str, api: str, spec_extra: dict[str, Any]) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": "reviews"}}, "spec": _pod()["spec"]}
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": "reviews", "namespace": "shop"},
        "spec": {**spec_extra, "template": template},
    }


SELECTOR = {"selector": {"matchLabels": {"app": "reviews"}}}
MANIFESTS = {
    "Pod": _pod(),
    "Deployment": _template("Deployment", "apps/v1", {"replicas": 2, **SELECTOR}),
    "StatefulSet": _template("StatefulSet", "apps/v1", {"serviceName": "reviews", **SELECTOR}),
    "Job": _template("Job", "batch/v1", {"backoffLimit": 1}),
}
MANIFESTS["Job"]["spec"]["template"]["spec"]["restartPolicy"] = "Never"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_every_injected_manifest_is_valid_kubernetes(kind: str, version: str) -> None:
    done, decision = inject_manifest(MANIFESTS[kind], CONFIG)
    assert decision is not None and decision.inject
    kubernetes_validate.validate(done, version, strict=True)
    pod_spec = done["spec"] if kind == "Pod" else done["spec"]["template"]["spec"]
    init = pod_spec["initContainers"]
    assert [c["name"] for c in init] == [INIT_CONTAINER, PROXY_CONTAINER]
    proxy = init[1]
    assert proxy["restartPolicy"] == "Always" and "startupProbe" in proxy  # native sidecar
    assert proxy["securityContext"]["runAsNonRoot"] is True
    assert (
        "--service" in proxy["args"]
        and proxy["args"][proxy["args"].index("--service") + 1] == "reviews"
    )


def test_the_webhooks_patch_makes_exactly_the_injected_pod_with_the_sidecar_first() -> None:
    pod = _pod(
        initContainers=[{"name": "migrate", "image": "migrate:1"}],
        volumes=[{"name": "data", "emptyDir": {}}],
    )
    pod["metadata"]["annotations"] = {
        "team": "books",
        "sidemesh.io/exclude-outbound-ports": "5432, 6379",
    }
    patched = jsonpatch.apply_patch(copy.deepcopy(pod), patch(pod, CONFIG))
    assert patched == injected(pod, CONFIG)
    assert [c["name"] for c in patched["spec"]["initContainers"]] == [
        INIT_CONTAINER,
        PROXY_CONTAINER,
        "migrate",
    ]
    assert patched["spec"]["volumes"][0]["name"] == "data"
    assert patched["metadata"]["annotations"] == {
        "team": "books",
        "sidemesh.io/exclude-outbound-ports": "5432, 6379",
        STATUS_ANNOTATION: "injected",
    }
    init_args = patched["spec"]["initContainers"][0]["args"]
    assert init_args.count("--exclude-outbound-port") == 2
    for version in VERSIONS:
        kubernetes_validate.validate(patched, version, strict=True)


@pytest.mark.parametrize(
    ("pod", "labels", "reason"),
    [
        (_pod(), {}, "its namespace is not labelled sidemesh.io/inject=enabled"),
        (_pod(hostNetwork=True), {"sidemesh.io/inject": "enabled"}, "it uses the host's network"),
        (injected(_pod(), CONFIG), {"sidemesh.io/inject": "enabled"}, "already injected"),
    ],
)
def test_pods_left_alone_say_why(pod: dict[str, Any], labels: dict[str, str], reason: str) -> None:
    decision = decide(pod, labels)
    assert not decision.inject and decision.reason.startswith(reason)


def test_a_pod_opted_out_by_annotation_is_left_alone() -> None:
    pod = _pod()
    pod["metadata"]["annotations"] = {"sidemesh.io/inject": "false"}
    assert (
        decide(pod, {"sidemesh.io/inject": "enabled"}).reason
        == 'opted out (sidemesh.io/inject: "false")'
    )
    done, decision = inject_manifest(pod, CONFIG)
    assert decision is not None and not decision.inject and done == pod


def test_injecting_twice_changes_nothing_the_second_time() -> None:
    once, _ = inject_manifest(MANIFESTS["Deployment"], CONFIG)
    twice, decision = inject_manifest(once, CONFIG)
    assert twice == once and decision is not None and decision.reason == "already injected"


def test_the_redirect_leaves_the_proxy_its_own_ports_and_the_excluded_ones() -> None:
    rules = Redirect(exclude_inbound_ports=(8081,), exclude_outbound_ports=(5432,)).rules()
    assert "-A SIDEMESH_OUTPUT -m owner --uid-owner 1337 -j RETURN" in rules
    assert "-A SIDEMESH_INBOUND -p tcp --dport 15006 -j RETURN" in rules
    assert "-A SIDEMESH_INBOUND -p tcp --dport 8081 -j RETURN" in rules
    assert "-A SIDEMESH_OUTPUT -p tcp --dport 5432 -j RETURN" in rules
    assert rules.index("--uid-owner") < rules.index("-j SIDEMESH_REDIRECT")
    assert rules.rstrip().endswith("COMMIT")
