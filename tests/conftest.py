"""Shared fixtures: a mesh with several services, ports and protocols."""

from __future__ import annotations

import textwrap

import pytest

from sidemesh.model import MeshState, parse_mesh_document

MULTI_SERVICE_MESH = textwrap.dedent(
    """
    mesh:
      trustDomain: example.org
    services:
      - name: productpage
        ports: [{port: 9080}]
      - name: reviews
        ports:
          - {port: 9080, protocol: http, name: http}
          - {port: 9090, protocol: grpc, name: grpc}
      - name: ratings
        ports: [{port: 50051, protocol: grpc}]
      - name: db
        ports: [{port: 5432, protocol: tcp}]
      - name: api
        ports: [{port: 80, protocol: http2}]
      - name: reviews
        namespace: other
        ports: [{port: 9080}]
    workloads:
      - name: productpage-1
        service: productpage
        port: 21001
        appPort: 21002
        sidecar: {outboundPort: 21003}
        upstreams:
          - {service: ratings, localPort: 21005}
          - {service: db, localPort: 21006}
          - {service: reviews, port: 9080, localPort: 21007}
      - name: reviews-v1
        service: reviews
        labels: {version: v1}
        ports:
          - {name: http, port: 21011, appPort: 21012}
          - {name: grpc, port: 21013, appPort: 21014}
        sidecar: {outboundPort: 21015}
      - name: reviews-v2
        service: reviews
        labels: {version: v2}
        address: 127.0.0.2
        ports:
          - {name: http, port: 21011, appPort: 21012}
          - {name: grpc, port: 21013, appPort: 21014}
        sidecar: {outboundPort: 21015}
      - name: ratings-1
        service: ratings
        port: 21021
        appPort: 21022
        sidecar: {outboundPort: 21023}
      - name: db-1
        service: db
        port: 21031
        appPort: 21032
        sidecar: {outboundPort: 21033}
      - name: api-1
        service: api
        port: 21041
        appPort: 21042
        sidecar: {outboundPort: 21043}
      - name: reviews-other
        namespace: other
        service: reviews
        port: 21051
        appPort: 21052
        sidecar: {outboundPort: 21053}
    gateways:
      - name: ingress
        port: 21060
        routes:
          - {prefix: /api/, service: api}
          - {prefix: /reviews, service: reviews, port: 9090}
          - {prefix: /, service: productpage}
    """
)


@pytest.fixture
def multi_service_state() -> MeshState:
    return parse_mesh_document(MULTI_SERVICE_MESH, "mesh.yaml")
