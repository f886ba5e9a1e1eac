"""A Gateway API ``Gateway`` under ``sidemesh up``: an HTTP listener and an HTTPS one
(a certificate the test makes, checked by a real TLS client, chosen by SNI) routing by
HTTPRoutes attached to them, to workloads running in the mesh. Real processes, real
Envoy, real TLS."""

from __future__ import annotations

import ssl
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_local import ROOT, running_up
from tests.helpers.certs import server_certificate
from tests.helpers.net import free_port

ECHO = ROOT / "examples" / "echo_app.py"


def _until_answered(url: str) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        try:
            reply = httpx.get(url, timeout=5)
            if reply.status_code == 200:
                return reply
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered 200"
        time.sleep(0.2)


def _https(port: int, server_name: str, trusted: ssl.SSLContext) -> httpx.Response:
    """A GET over TLS to 127.0.0.1 for ``server_name`` (SNI, certificate check, Host)."""
    with httpx.Client(verify=trusted, timeout=5) as client:
        request = client.build_request(
            "GET",
            f"https://127.0.0.1:{port}/anything",
            headers={"Host": server_name},
            extensions={"sni_hostname": server_name},
        )
        return client.send(request)


def test_a_gateway_serves_http_and_https_listeners_by_their_routes(tmp_path: Path) -> None:
    http_port, https_port = free_port(), free_port()
    certs = server_certificate(tmp_path / "certs", "shop.example.test")
    mesh_file = tmp_path / "mesh.yaml"
    mesh_file.write_text(
        textwrap.dedent(
            f"""
            services:
              - {{name: web, ports: [{{port: 8080}}]}}
              - {{name: shop, ports: [{{port: 8080}}]}}
            workloads:
              - name: web-1
                service: web
                command: python {ECHO} {{workload}} {{port}}
              - name: shop-1
                service: shop
                command: python {ECHO} {{workload}} {{port}}
            ---
            apiVersion: gateway.networking.k8s.io/v1
            kind: Gateway
            metadata:
              name: public
            spec:
              gatewayClassName: sidemesh
              listeners:
              - name: http
                port: {http_port}
                protocol: HTTP
              - name: shop-https
                port: {https_port}
                protocol: HTTPS
                hostname: shop.example.test
                tls:
                  mode: Terminate
                  options:
                    sidemesh.io/certificate-file: {certs.certificate}
                    sidemesh.io/key-file: {certs.key}
            ---
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata:
              name: site
            spec:
              parentRefs:
              - name: public
                sectionName: http
              rules:
              - matches:
                - path: {{type: PathPrefix, value: /shop}}
                backendRefs:
                - {{name: shop, port: 8080}}
              - backendRefs:
                - {{name: web, port: 8080}}
            ---
            apiVersion: gateway.networking.k8s.io/v1
            kind: HTTPRoute
            metadata:
              name: shop
            spec:
              parentRefs:
              - name: public
                sectionName: shop-https
              hostnames: [shop.example.test]
              rules:
              - backendRefs:
                - {{name: shop, port: 8080}}
            """
        )
    )
    with running_up(tmp_path / "run", mesh_file) as up:
        plain = f"http://127.0.0.1:{http_port}"
        assert _until_answered(f"{plain}/").json()["workload"] == "web-1"
        assert httpx.get(f"{plain}/shop/cart", timeout=5).json()["workload"] == "shop-1"
        assert httpx.get(f"{plain}/shopping", timeout=5).json()["workload"] == "web-1"

        trusted = ssl.create_default_context(cafile=str(certs.ca))
        secure = _https(https_port, "shop.example.test", trusted)
        assert secure.status_code == 200 and secure.json()["workload"] == "shop-1"
        # Another name is no listener's: no certificate is offered for it.
        with pytest.raises(httpx.ConnectError):
            _https(https_port, "other.example.test", trusted)

        status = up.sidemesh("status")
        assert "public" in status.stdout, status.stdout
