"""Every manifest ``sidemesh install`` writes: the control plane and what it needs to
run in a cluster, with the least privilege it needs.

The control plane runs as two replicas (``ready for more than one``): both load one CA
from the ``sidemesh-ca`` Secret, so certificates from either chain to one root. The
Secret comes from the operator's own CA (``kubectl create secret generic sidemesh-ca
--from-file=root-cert.pem --from-file=ca-cert.pem --from-file=ca-key.pem``), or from
``sidemesh install --generate-ca``, which makes a fresh root and intermediate.
The injection webhook's ``caBundle`` is filled in by the control plane (it serves the
webhook with a certificate from that CA); the Gateway API's own CRDs are installed
from the Gateway API project, as every GAMMA implementation expects.
"""

from __future__ import annotations

import base64
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sidemesh.identity.ca import CA_CERT, CA_KEY, ROOT_CERT, CertificateAuthority
from sidemesh.kube.crds import GROUP, PLURALS, custom_resource_definitions
from sidemesh.kube.inject import INJECT_LABEL, InjectConfig
from sidemesh.kube.manifests import (
    VALIDATING_CONFIGURATION_NAME,
    mutating_webhook_configuration,
    validating_webhook_configuration,
)

NAME = "sidemesh"
CA_SECRET = "sidemesh-ca"
MESH_CONFIGMAP = "sidemesh-mesh"
STATE_DIR = "/var/lib/sidemesh"
CONFIG_DIR = "/etc/sidemesh"
PORTS = {"grpc-xds": 15010, "https-ca": 15012, "http-api": 15014, "https-webhook": 15017}
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": NAME}
CONTROL_PLANE_UID = 1337


@dataclass(frozen=True)
class InstallOptions:
    namespace: str = "sidemesh-system"
    image: str = InjectConfig().image
    replicas: int = 2
    trust_domain: str = "cluster.local"
    fail_open: bool = True
    """The injection webhook: pods are created without the sidecar if it is down."""
    generate_ca: bool = False


def install_manifests(options: InstallOptions) -> list[dict[str, Any]]:
    """Every object, in the order ``kubectl apply`` should create them."""
    ns = options.namespace
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            # Never inject the control plane into itself.
            "metadata": {"name": ns, "labels": {**LABELS, INJECT_LABEL: "disabled"}},
        },
        *custom_resource_definitions(),
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": NAME, "namespace": ns, "labels": LABELS},
        },
        _cluster_role(),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{NAME}-controlplane", "labels": LABELS},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{NAME}-controlplane",
            },
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": MESH_CONFIGMAP, "namespace": ns, "labels": LABELS},
            "data": {
                "mesh.yaml": yaml.safe_dump(
                    {"mesh": {"trustDomain": options.trust_domain}, "workloads": []},
                    sort_keys=False,
                )
            },
        },
    ]
    if options.generate_ca:
        objects.append(_ca_secret(options))
    objects += [
        _deployment(options),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": NAME, "namespace": ns, "labels": LABELS},
            "spec": {
                "selector": {"app.kubernetes.io/name": NAME},
                "ports": [
                    {"name": name, "port": port, "targetPort": port, "protocol": "TCP"}
                    for name, port in PORTS.items()
                ],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": NAME, "namespace": ns, "labels": LABELS},
            "spec": {
                "minAvailable": 1,
                "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            },
        },
        mutating_webhook_configuration(
            None,
            namespace=ns,
            service=NAME,
            port=PORTS["https-webhook"],
            fail_open=options.fail_open,
        ),
        validating_webhook_configuration(
            None, namespace=ns, service=NAME, port=PORTS["https-webhook"]
        ),
    ]
    return objects


def uninstall_references(options: InstallOptions) -> list[dict[str, Any]]:
    """What ``install`` made, by kind and name only: enough for ``kubectl delete -f``.
    The CRDs go last: deleting them deletes every policy object of their kinds."""
    found = [
        {
            "apiVersion": o["apiVersion"],
            "kind": o["kind"],
            "metadata": {k: v for k, v in o["metadata"].items() if k in ("name", "namespace")},
        }
        for o in reversed(install_manifests(options))
        if o["kind"] != "CustomResourceDefinition"
    ]
    crds = [o for o in install_manifests(options) if o["kind"] == "CustomResourceDefinition"]
    return found + [
        {
            "apiVersion": c["apiVersion"],
            "kind": c["kind"],
            "metadata": {"name": c["metadata"]["name"]},
        }
        for c in crds
    ]


def to_yaml(objects: list[dict[str, Any]]) -> str:
    return "".join("---\n" + yaml.safe_dump(o, sort_keys=False) for o in objects)


def _cluster_role() -> dict[str, Any]:
    read = ["get", "list", "watch"]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"{NAME}-controlplane", "labels": LABELS},
        "rules": [
            {"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": read},
            # Why a policy object was left out, shown by `kubectl describe`.
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
            # The mesh root for injected pods, one ConfigMap per meshed namespace.
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update"]},
            {
                "apiGroups": ["authentication.k8s.io"],
                "resources": ["tokenreviews"],
                "verbs": ["create"],
            },
            {
                "apiGroups": ["gateway.networking.k8s.io"],
                "resources": ["httproutes", "grpcroutes", "gateways"],
                "verbs": read,
            },
            {"apiGroups": [GROUP], "resources": sorted(PLURALS.values()), "verbs": read},
            {
                "apiGroups": ["admissionregistration.k8s.io"],
                "resources": ["mutatingwebhookconfigurations"],
                "resourceNames": ["sidemesh-sidecar-injector"],
                "verbs": ["get", "patch"],
            },
            {
                "apiGroups": ["admissionregistration.k8s.io"],
                "resources": ["validatingwebhookconfigurations"],
                "resourceNames": [VALIDATING_CONFIGURATION_NAME],
                "verbs": ["get", "patch"],
            },
        ],
    }


def _deployment(options: InstallOptions) -> dict[str, Any]:
    ns = options.namespace
    args = [
        "controlplane",
        "--config",
        f"{CONFIG_DIR}/mesh.yaml",
        "--kubernetes",
        "--kube-namespace",
        ns,
        "--state-dir",
        STATE_DIR,
        "--xds-host",
        "0.0.0.0",
        "--ca-host",
        "0.0.0.0",
        "--log-format",
        "json",
    ]
    probe = {"httpGet": {"path": "/healthz", "port": PORTS["http-api"]}, "periodSeconds": 5}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": ns, "labels": LABELS},
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "template": {
                "metadata": {"labels": LABELS, "annotations": {f"{INJECT_LABEL}": "false"}},
                "spec": {
                    "serviceAccountName": NAME,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": CONTROL_PLANE_UID,
                        "runAsGroup": CONTROL_PLANE_UID,
                        "fsGroup": CONTROL_PLANE_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "controlplane",
                            "image": options.image,
                            "args": args,
                            "ports": [
                                {"name": name[:15], "containerPort": port}
                                for name, port in PORTS.items()
                            ],
                            "readinessProbe": probe,
                            "livenessProbe": {**probe, "failureThreshold": 6},
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "256Mi"},
                                "limits": {"memory": "1Gi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                                {"name": "state", "mountPath": STATE_DIR},
                                {"name": "ca", "mountPath": f"{STATE_DIR}/ca", "readOnly": True},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "config", "configMap": {"name": MESH_CONFIGMAP}},
                        {"name": "state", "emptyDir": {}},
                        {"name": "ca", "secret": {"secretName": CA_SECRET, "defaultMode": 0o400}},
                    ],
                },
            },
        },
    }


def _ca_secret(options: InstallOptions) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        ca_dir = Path(directory) / "ca"
        CertificateAuthority.load_or_create(ca_dir, options.trust_domain)
        data = {
            name: base64.b64encode((ca_dir / name).read_bytes()).decode()
            for name in (ROOT_CERT, CA_CERT, CA_KEY)
        }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CA_SECRET, "namespace": options.namespace, "labels": LABELS},
        "type": "Opaque",
        "data": data,
    }


_COLLECTIONS = {
    "Namespace": "namespaces",
    "ServiceAccount": "serviceaccounts",
    "ConfigMap": "configmaps",
    "Secret": "secrets",
    "Service": "services",
    "Deployment": "deployments",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "CustomResourceDefinition": "customresourcedefinitions",
    "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
    "ValidatingWebhookConfiguration": "validatingwebhookconfigurations",
}


def object_path(obj: dict[str, Any]) -> str:
    """The API path of an object ``install`` writes (to apply or delete it)."""
    api_version = obj["apiVersion"]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    meta = obj["metadata"]
    scope = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    return f"{prefix}{scope}/{_COLLECTIONS[obj['kind']]}/{meta['name']}"
