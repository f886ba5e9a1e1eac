"""The memo, policy by policy: changing one policy document rebuilds exactly the
resources that depend on it, as ``test_memo`` shows for the mesh's own inputs. Each
kind (HTTPRoute, GRPCRoute, FaultInjection, BackendPolicy, ExternalService, Gateway) and the
mesh's outboundTrafficPolicy is edited once, and the expected changes are written
out."""

from __future__ import annotations

from collections import Counter

from sidemesh.envoy.translator import (
    API_GATEWAY_LISTENER,
    BACKENDS,
    EXTERNAL_CLUSTERS,
    INBOUND_LISTENER,
    JWKS_CLUSTER,
    OUTBOUND_CLUSTER,
    OUTBOUND_LISTENER,
    OUTBOUND_ROUTES,
    VIRTUAL_HOSTS,
)
from tests.envoy.test_memo import BASE, EVERY_PROXY, SIDECARS, _rebuilt_by, _shared

POLICIES = """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews-split}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
    - filters: [{type: ExtensionRef, extensionRef: {group: sidemesh.io, kind: FaultInjection, name: slow}}]
      backendRefs: [{name: reviews, port: 9080, weight: 90}, {name: productpage, port: 9080, weight: 10}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: ratings-get}
spec:
  parentRefs: [{group: "", kind: Service, name: ratings}]
  rules:
    - matches: [{method: {service: ratings.Ratings, method: Get}}]
      backendRefs: [{name: ratings, port: 50051}]
---
apiVersion: sidemesh.io/v1alpha1
kind: FaultInjection
metadata: {name: slow}
spec: {delay: {fixedDelay: 100ms, percentage: 10}}
---
apiVersion: sidemesh.io/v1alpha1
kind: BackendPolicy
metadata: {name: ratings}
spec:
  targetRefs: [{name: ratings}]
  connectionPool: {maxRequests: 10}
  rateLimit: {requests: 100}
---
apiVersion: sidemesh.io/v1alpha1
kind: ExternalService
metadata: {name: payments}
spec:
  hosts: [api.payments.example]
  ports: [{port: 80}]
"""

WITH_POLICIES = BASE + POLICIES
GATEWAY_AND_SIDECARS = EVERY_PROXY
OUTBOUND_LISTENERS = {
    ("productpage-1", "listeners", "outbound|21003"),
    ("reviews-v1", "listeners", "outbound|21015"),
    ("reviews-v2", "listeners", "outbound|21015"),
    ("ratings-1", "listeners", "outbound|21023"),
    ("db-1", "listeners", "outbound|21033"),
    ("api-1", "listeners", "outbound|21043"),
    ("reviews-other", "listeners", "outbound|21053"),
}


def _route_configs() -> set[tuple[str, str, str]]:
    return _shared("routes", "outbound-http", SIDECARS)


def test_an_http_routes_weights_rebuild_that_services_virtual_hosts_only() -> None:
    changed, built = _rebuilt_by("weight: 90}", "weight: 50}", WITH_POLICIES)
    assert changed == _route_configs()
    # reviews' virtual hosts as seen from each namespace; nothing else of any proxy.
    assert built == Counter({VIRTUAL_HOSTS: 2, OUTBOUND_ROUTES: 2})


def test_a_grpc_routes_match_rebuilds_that_services_virtual_hosts_only() -> None:
    changed, built = _rebuilt_by("method: Get}", "method: List}", WITH_POLICIES)
    assert changed == _route_configs()
    assert built == Counter({VIRTUAL_HOSTS: 2, OUTBOUND_ROUTES: 2})


def test_a_fault_rebuilds_the_virtual_hosts_of_the_routes_that_name_it() -> None:
    changed, built = _rebuilt_by("fixedDelay: 100ms", "fixedDelay: 200ms", WITH_POLICIES)
    assert changed == _route_configs()
    assert built == Counter({VIRTUAL_HOSTS: 2, OUTBOUND_ROUTES: 2})


def test_a_backend_policys_circuit_breaker_rebuilds_that_services_cluster_only() -> None:
    changed, built = _rebuilt_by("maxRequests: 10", "maxRequests: 20", WITH_POLICIES)
    assert changed == _shared("clusters", "outbound|50051||ratings.default")
    assert built == Counter({OUTBOUND_CLUSTER: 1})


def test_a_backend_policys_rate_limit_rebuilds_the_services_own_inbound_listener_only() -> None:
    changed, built = _rebuilt_by("requests: 100}", "requests: 50}", WITH_POLICIES)
    assert changed == {("ratings-1", "listeners", "inbound|50051|ratings")}
    assert built == Counter({INBOUND_LISTENER: 1})


def test_an_external_services_port_rebuilds_its_clusters_and_the_route_configurations() -> None:
    changed, built = _rebuilt_by("ports: [{port: 80}]", "ports: [{port: 8080}]", WITH_POLICIES)
    assert changed == (
        _shared("clusters", "outbound|80||api.payments.example")
        | _shared("clusters", "outbound|8080||api.payments.example")
        | _route_configs()
    )
    assert built == Counter({EXTERNAL_CLUSTERS: 1, OUTBOUND_ROUTES: 2})


def test_the_outbound_traffic_policy_rebuilds_the_way_out_and_nothing_of_the_services() -> None:
    changed, built = _rebuilt_by(
        "  trustDomain: example.org\n",
        "  trustDomain: example.org\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n",
        WITH_POLICIES,
    )
    # The passthrough cluster goes, the catch-all answers 502, and the sidecars'
    # outbound chains drop the forward proxy filter.
    assert changed == (
        _shared("clusters", "PassthroughCluster") | _route_configs() | OUTBOUND_LISTENERS
    )
    assert built == Counter({OUTBOUND_ROUTES: 2, OUTBOUND_LISTENER: 6})
    assert BACKENDS not in built


GATEWAY = """
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public}
spec:
  listeners:
    - {name: web, port: 22080, protocol: HTTP}
    - {name: api, port: 22081, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: public-web}
spec:
  parentRefs: [{name: public, sectionName: web}]
  rules: [{backendRefs: [{name: productpage, port: 9080}]}]
"""


def test_a_route_on_a_gateway_rebuilds_that_listener_of_that_gateway_only() -> None:
    changed, built = _rebuilt_by(
        "{name: productpage, port: 9080}]}]\n",
        "{name: api, port: 80}]}]\n",
        WITH_POLICIES + GATEWAY,
    )
    assert changed == {("public", "listeners", "gateway|22080|public")}
    assert built == Counter({API_GATEWAY_LISTENER: 1})


SECURITY = """
---
apiVersion: sidemesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: ratings-callers}
spec:
  targetRefs: [{name: ratings}]
  rules: [{from: [{source: {namespaces: [default]}}]}]
---
apiVersion: sidemesh.io/v1alpha1
kind: RequestAuthentication
metadata: {name: ratings-jwt}
spec:
  targetRefs: [{name: ratings}]
  jwtRules: [{issuer: https://issuer.example, jwksUri: "https://issuer.example/jwks"}]
"""


def test_an_authorization_policy_rebuilds_its_services_inbound_listeners_only() -> None:
    changed, built = _rebuilt_by(
        "namespaces: [default]", "namespaces: [other]", WITH_POLICIES + SECURITY
    )
    assert changed == {("ratings-1", "listeners", "inbound|50051|ratings")}
    assert built == Counter({INBOUND_LISTENER: 1})


def test_a_request_authentication_rebuilds_its_services_inbound_side_only() -> None:
    changed, built = _rebuilt_by(
        "https://issuer.example/jwks", "https://keys.example/jwks", WITH_POLICIES + SECURITY
    )
    assert changed == {
        ("ratings-1", "listeners", "inbound|50051|ratings"),
        ("ratings-1", "clusters", "jwks|https|issuer.example|443"),
        ("ratings-1", "clusters", "jwks|https|keys.example|443"),
    }
    assert built == Counter({INBOUND_LISTENER: 1, JWKS_CLUSTER: 1})


TELEMETRY = """
---
apiVersion: sidemesh.io/v1alpha1
kind: Telemetry
metadata: {name: ratings-tracing}
spec:
  targetRefs: [{name: ratings}]
  tracing: {randomSamplingPercentage: 10}
"""


def test_a_telemetrys_sampling_rebuilds_its_services_own_listeners_only() -> None:
    changed, built = _rebuilt_by(
        "randomSamplingPercentage: 10", "randomSamplingPercentage: 50", WITH_POLICIES + TELEMETRY
    )
    # ratings' workload traces the calls it receives and those it makes; no other proxy.
    assert changed == {
        ("ratings-1", "listeners", "inbound|50051|ratings"),
        ("ratings-1", "listeners", "outbound|21023"),
    }
    assert built == Counter({INBOUND_LISTENER: 1, OUTBOUND_LISTENER: 1})
