"""Every resource translation produces, and every bootstrap, passes a real
``envoy --mode validate``."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from sidemesh.envoy import ProxyId, ResourceType, Translator
from sidemesh.envoy.bootstrap import BootstrapParams, XdsMode, bootstrap, to_json
from sidemesh.envoy.outbound.demand import Reason
from sidemesh.model import MeshState, ServiceKey, parse_mesh_document
from tests.conftest import MULTI_SERVICE_MESH
from tests.helpers.certs import server_certificate
from tests.helpers.envoy_validate import inline_bootstrap, validate
from tests.helpers.tokens import Issuer


def test_every_proxys_resources_pass_envoy_validate(
    multi_service_state: MeshState, tmp_path: Path
) -> None:
    translator = Translator()
    kinds_seen: set[ResourceType] = set()
    for name, namespace in [*multi_service_state.workloads, *multi_service_state.gateways]:
        resources = translator.for_proxy(multi_service_state, ProxyId(name, namespace))
        kinds_seen |= {t for t in ResourceType if resources[t]}
        validate(inline_bootstrap(resources), tmp_path, f"{name}.{namespace}.json")
        if multi_service_state.workload(name, namespace) is None:
            continue
        # On demand: having asked for a service by each spelling, and for a host
        # outside the mesh.
        asked = frozenset(
            f"outbound-http/{host}"
            for host in ("reviews", "api.default:80", "reviews.other.svc:9080", "example.com")
        )
        resources = translator.for_proxy(multi_service_state, ProxyId(name, namespace), asked)
        kinds_seen |= {t for t in ResourceType if resources[t]}
        validate(inline_bootstrap(resources), tmp_path, f"{name}.{namespace}.on-demand.json")
    assert kinds_seen == set(ResourceType)


@pytest.mark.parametrize("mode", list(XdsMode))
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "10.0.0.5"])
def test_bootstrap_passes_envoy_validate(mode: XdsMode, host: str, tmp_path: Path) -> None:
    """Off loopback, xDS goes over mTLS with the workload's certificate."""
    params = BootstrapParams(
        proxy=ProxyId("reviews-v1", "default"),
        service="reviews",
        control_plane_host=host,
        control_plane_port=15010,
        admin_socket="/tmp/sidemesh-x/admin.sock",
        sds_socket="/tmp/sidemesh-x/sds.sock",
        xds_mode=mode,
        xds_tls_identity=(
            None if host != "10.0.0.5" else "spiffe://test.local/ns/sidemesh-system/sa/controlplane"
        ),
        # Replicas of the control plane, by address and by name.
        other_control_planes=(("10.0.0.6", 15010), ("cp-2.example", 15010))
        if host == "10.0.0.5"
        else (),
    )
    validate(to_json(bootstrap(params)), tmp_path)


POLICIES = """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: reviews-routes}
spec:
  parentRefs: [{group: "", kind: Service, name: reviews, port: 9080}]
  rules:
    - name: jason
      matches:
        - path: {type: PathPrefix, value: /api/}
          headers: [{name: end-user, value: jason}, {type: RegularExpression, name: x-trace, value: "^[a-f0-9]+$"}]
          queryParams: [{name: debug, value: "1"}]
          method: GET
      filters:
        - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-env, value: canary}], add: [{name: x-a, value: b}], remove: [x-debug]}}
        - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: x-served-by, value: mesh}]}}
        - {type: RequestMirror, requestMirror: {backendRef: {name: productpage, port: 9080}, percent: 10}}
        - {type: URLRewrite, urlRewrite: {hostname: reviews.internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2/}}}
        - {type: ExtensionRef, extensionRef: {group: sidemesh.io, kind: FaultInjection, name: flaky}}
      backendRefs:
        - name: reviews
          port: 9080
          weight: 90
          filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-backend, value: v1}]}}]
        - {name: reviews-v3, port: 9080, weight: 10}
      timeouts: {request: 5s, backendRequest: 1s}
      retry: {attempts: 3, codes: [502, 503], backoff: 50ms}
    - matches: [{path: {type: Exact, value: /old}}]
      filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: example.com, port: 8443, statusCode: 308}}]
    - matches: [{path: {type: RegularExpression, value: "/items/[0-9]+"}}]
      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /items}}}]
      backendRefs: [{name: reviews, port: 9080}]
    - matches: [{path: {value: /none}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: ratings-grpc}
spec:
  parentRefs: [{group: "", kind: Service, name: ratings}]
  rules:
    - matches: [{method: {service: ratings.Ratings, method: Get}, headers: [{name: x-user, value: a}]}]
      backendRefs: [{name: ratings, port: 50051}]
    - matches: [{method: {type: RegularExpression, service: "ratings\\\\..*"}}]
      backendRefs: [{name: ratings, port: 50051}]
---
apiVersion: sidemesh.io/v1alpha1
kind: FaultInjection
metadata: {name: flaky}
spec: {delay: {fixedDelay: 100ms, percentage: 10}, abort: {httpStatus: 503, percentage: 5}}
---
apiVersion: sidemesh.io/v1alpha1
kind: BackendPolicy
metadata: {name: reviews}
spec:
  targetRefs: [{name: reviews}]
  loadBalancer: {type: RingHash, hashOn: {cookie: {name: session, ttl: 1h}}}
  connectionPool: {maxConnections: 100, maxPendingRequests: 10, maxRequests: 200}
  outlierDetection: {consecutive5xxErrors: 3, consecutiveGatewayErrors: 2, consecutiveLocalOriginFailures: 3, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50}
  healthCheck: {path: /healthz, interval: 2s, timeout: 500ms}
  retryBudget: {percent: 20, minRetryConcurrency: 5}
  rateLimit:
    requests: 100
    per: 1s
    burst: 200
    routes:
      - match: {path: {type: PathPrefix, value: /login}, method: POST}
        requests: 5
        per: 1m
      - {match: {path: {type: Exact, value: /search}}, requests: 50}
---
apiVersion: sidemesh.io/v1alpha1
kind: BackendPolicy
metadata: {name: ratings}
spec:
  targetRefs: [{name: ratings}]
  loadBalancer: {type: Maglev, hashOn: {header: x-user}}
  connectionPool: {maxRetries: 3}
  rateLimit: {routes: [{match: {headers: [{name: x-tier, value: free}]}, requests: 1}]}
---
apiVersion: sidemesh.io/v1alpha1
kind: BackendPolicy
metadata: {name: productpage}
spec:
  targetRefs: [{name: productpage}]
  loadBalancer: {type: LeastRequest}
---
apiVersion: sidemesh.io/v1alpha1
kind: ExternalService
metadata: {name: payments}
spec:
  hosts: [api.payments.example, payments.example]
  ports: [{port: 80, targetPort: 443}, {port: 8080}]
  tls: {sni: api.payments.example}
---
apiVersion: sidemesh.io/v1alpha1
kind: ExternalService
metadata: {name: ledger}
spec:
  hosts: [ledger.example]
  ports: [{port: 80}]
  endpoints: [{address: 192.0.2.10}, {address: 192.0.2.11}]
---
apiVersion: sidemesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: reviews-readers}
spec:
  targetRefs: [{name: reviews}]
  action: ALLOW
  rules:
    - from:
        - source: {principals: ["example.org/ns/default/sa/productpage"], namespaces: [default]}
        - source: {serviceAccounts: [default/ratings], notIpBlocks: [10.0.0.0/8]}
      to:
        - operation: {paths: ["/reviews/*", "/users/{id}/orders", "*.json"], methods: [GET], ports: [9080]}
      when:
        - {key: "request.headers[x-role]", values: [reader, "admin*"], notValues: [banned]}
        - {key: source.ip, values: [127.0.0.1/32]}
---
apiVersion: sidemesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-admin}
spec:
  action: DENY
  rules:
    - from: [{source: {notPrincipals: ["*/sa/productpage"], authenticated: true}}]
      to: [{operation: {paths: [/admin, /admin/*], hosts: [secret.local, "*.internal"], notMethods: [HEAD]}}]
---
apiVersion: sidemesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: audit-all}
spec:
  action: AUDIT
  rules:
    - from: [{source: {requestPrincipals: ["https://issuer.example/alice", "*"]}}]
      when:
        - {key: "request.auth.claims[groups]", values: [admins]}
        - {key: "request.auth.claims[org][team]", notValues: [x]}
        - {key: request.auth.principal, values: ["https://issuer.example/*"]}
---
apiVersion: sidemesh.io/v1alpha1
kind: RequestAuthentication
metadata: {name: reviews-jwt}
spec:
  targetRefs: [{name: reviews}]
  required: false
  jwtRules:
    - issuer: https://issuer.example
      audiences: [reviews]
      jwksUri: https://issuer.example/.well-known/jwks.json
    - issuer: local
      jwks: 'TEST_JWKS'
      fromHeaders: [{name: x-token}]
      forwardOriginalToken: true
"""


def policies() -> str:
    """POLICIES with a real key set (Envoy refuses one without a valid key)."""
    return POLICIES.replace("TEST_JWKS", Issuer().jwks())


def test_every_policy_kind_passes_envoy_validate(tmp_path: Path) -> None:
    state = parse_mesh_document(MULTI_SERVICE_MESH + policies(), "mesh.yaml")
    assert len(state.policies) == 12
    assert len(state.warnings) == 1, state.warnings  # reviews-v3: unresolved
    translator = Translator()
    for name, namespace in [*state.workloads, *state.gateways]:
        resources = translator.for_proxy(state, ProxyId(name, namespace))
        validate(inline_bootstrap(resources), tmp_path, f"{name}.{namespace}.json")
    routes = translator.for_proxy(state, ProxyId("productpage-1", "default"))[ResourceType.ROUTE]
    (config,) = routes.values()
    reviews = next(h for h in config.message.virtual_hosts if h.name == "reviews.default:9080")
    assert [r.name for r in reviews.routes] == [
        "default/reviews-routes/rule-1/0",
        "default/reviews-routes/rule-2/0",
        "default/reviews-routes/jason/0",
        "default/reviews-routes/rule-3/0",
    ]


def test_a_mesh_that_denies_by_default_passes_envoy_validate(tmp_path: Path) -> None:
    text = MULTI_SERVICE_MESH.replace("mesh:", "mesh:\n  authorization: {default: deny}", 1)
    state = parse_mesh_document(text, "mesh.yaml")
    resources = Translator().for_proxy(state, ProxyId("reviews-v1", "default"))
    validate(inline_bootstrap(resources), tmp_path)


@pytest.mark.parametrize("mode", ["ALLOW_ANY", "REGISTRY_ONLY"])
def test_both_outbound_traffic_policies_pass_envoy_validate(mode: str, tmp_path: Path) -> None:
    text = MULTI_SERVICE_MESH.replace(
        "mesh:", f"mesh:\n  outboundTrafficPolicy: {{mode: {mode}}}", 1
    )
    state = parse_mesh_document(text + policies(), "mesh.yaml")
    assert state.mesh.outbound_traffic_policy.mode == mode
    resources = Translator().for_proxy(state, ProxyId("productpage-1", "default"))
    validate(inline_bootstrap(resources), tmp_path)


def test_a_gateway_api_gateway_with_http_and_https_listeners_passes_envoy_validate(
    tmp_path: Path,
) -> None:
    certs = server_certificate(tmp_path / "certs", "shop.example.com", "*.example.com")
    tls = (
        "tls: {mode: Terminate, options: {sidemesh.io/certificate-file: "
        f"{certs.certificate}, sidemesh.io/key-file: {certs.key}}}}}"
    )
    gateway = f"""
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: public}}
spec:
  gatewayClassName: sidemesh
  listeners:
    - {{name: http, port: 22080, protocol: HTTP}}
    - {{name: shop-http, port: 22080, protocol: HTTP, hostname: shop.example.com}}
    - {{name: shop, port: 22443, protocol: HTTPS, hostname: shop.example.com, {tls}}}
    - {{name: any, port: 22443, protocol: HTTPS, hostname: "*.example.com", {tls}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shop}}
spec:
  parentRefs: [{{name: public}}]
  hostnames: [shop.example.com]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /reviews}}}}]
      filters: [{{type: ExtensionRef, extensionRef: {{group: sidemesh.io, kind: FaultInjection, name: flaky}}}}]
      backendRefs: [{{name: reviews, port: 9080, weight: 90}}, {{name: productpage, port: 9080, weight: 10}}]
    - backendRefs: [{{name: productpage, port: 9080}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: plain}}
spec:
  parentRefs: [{{name: public, sectionName: http}}]
  rules:
    - filters: [{{type: RequestRedirect, requestRedirect: {{scheme: https, port: 22443}}}}]
"""
    state = parse_mesh_document(MULTI_SERVICE_MESH + policies() + gateway, "mesh.yaml")
    resources = Translator().for_proxy(state, ProxyId("public", "default"))
    assert set(resources[ResourceType.LISTENER]) == {
        "gateway|22080|public",
        "gateway|22443|public",
    }
    https = resources[ResourceType.LISTENER]["gateway|22443|public"].message
    assert [list(c.filter_chain_match.server_names) for c in https.filter_chains] == [
        ["*.example.com"],
        ["shop.example.com"],
    ]
    validate(inline_bootstrap(resources), tmp_path)


def test_tracing_to_the_control_plane_and_to_a_collector_passes_envoy_validate(
    tmp_path: Path,
) -> None:
    """Spans go to the control plane over the bootstrap's xDS cluster, or to the mesh's
    collector over a cluster of its own, which every proxy then holds; a Telemetry
    document sets one service's sampling and logging, the others keep the mesh's."""
    telemetry = (
        "---\napiVersion: sidemesh.io/v1alpha1\nkind: Telemetry\n"
        "metadata: {name: reviews}\n"
        "spec: {targetRefs: [{name: reviews}], tracing: {randomSamplingPercentage: 100},\n"
        "  accessLogging: {requests: All}}\n"
    )
    for tracing in ("{}", "{randomSamplingPercentage: 5, collector: 'otel.example:4317'}"):
        text = MULTI_SERVICE_MESH.replace("mesh:", f"mesh:\n  tracing: {tracing}", 1)
        state = parse_mesh_document(text + telemetry, "mesh.yaml")
        translator = Translator()
        for name, namespace in [*state.workloads, *state.gateways]:
            resources = translator.for_proxy(state, ProxyId(name, namespace))
            validate(inline_bootstrap(resources), tmp_path, f"{name}.{namespace}.json")
        reviews = translator.for_proxy(state, ProxyId("reviews-v1", "default"))
        inbound = reviews[ResourceType.LISTENER]["inbound|9080|reviews"].message
        hcm = hcm_pb2.HttpConnectionManager()
        inbound.filter_chains[0].filters[0].typed_config.Unpack(hcm)
        assert hcm.tracing.random_sampling.value == 100
        assert not hcm.access_log[0].HasField("filter")  # every request logged
        other = translator.for_proxy(state, ProxyId("ratings-1", "default"))
        other_inbound = other[ResourceType.LISTENER]["inbound|50051|ratings"].message
        other_inbound.filter_chains[0].filters[0].typed_config.Unpack(hcm)
        assert hcm.tracing.random_sampling.value == (5 if "collector" in tracing else 1)
        assert hcm.access_log[0].HasField("filter")  # failed requests only
        assert ("otlp-collector" in reviews[ResourceType.CLUSTER]) == ("collector" in tracing)


def test_a_captured_pods_sidecar_passes_envoy_validate(tmp_path: Path) -> None:
    """A pod's sidecar (as the Kubernetes source makes its workload): its inbound
    listeners bind no port, a capture listener on 15006 hands them their connections;
    its outbound listener sends a connection dialled at a TCP service's ClusterIP or
    pod to that service."""
    from sidemesh.model import parse_documents
    from sidemesh.sources.kube.convert import to_documents
    from tests.sources.kube.test_source import pod, service

    db = service("db", {"app": "db"}, 5432)
    db["spec"]["ports"][0]["name"] = "tcp-postgres"
    db["spec"]["clusterIP"] = "10.96.0.20"
    # Another Service of the same pods and port: one filter chain per address.
    replica = service("db-replica", {"app": "db"}, 5432)
    replica["spec"]["ports"][0]["name"] = "tcp-postgres"
    replica["spec"]["clusterIP"] = "10.96.0.21"
    docs = to_documents(
        {},
        [
            service("reviews", {"app": "reviews"}),
            service("ratings", {"app": "ratings"}),
            db,
            replica,
        ],
        [
            pod("reviews-v1-a", {"app": "reviews"}, "10.1.0.11"),
            pod("ratings-v1-a", {"app": "ratings"}, "10.1.0.12"),
            pod("ratings-v1-b", {"app": "ratings"}, "10.1.0.13", ready=False),
            pod("db-0", {"app": "db"}, "10.1.0.20"),
        ],
        [],
    )
    state = parse_documents(docs.first, docs.policies, "Kubernetes")
    translator = Translator()
    on_demand = translator.for_proxy(state, ProxyId("reviews-v1-a", "shop"), frozenset())
    assert on_demand.held is not None
    assert on_demand.held.get(ServiceKey("db", "shop")) is Reason.CAPTURED
    validate(inline_bootstrap(on_demand), tmp_path, "on-demand.json")
    resources = translator.for_proxy(state, ProxyId("reviews-v1-a", "shop"))
    listeners = {r.name: r.message for r in resources[ResourceType.LISTENER].values()}
    outbound = listeners["outbound|15001"]
    chains = {c.name: c.filters[0].typed_config for c in outbound.filter_chains if c.name != "http"}
    assert set(chains) == {"tcp|10.96.0.20:5432", "tcp|10.96.0.21:5432", "tcp|10.1.0.20:5432"}
    assert b"outbound|5432||db-replica.shop" in chains["tcp|10.96.0.21:5432"].value
    assert b"outbound|5432||db.shop" in chains["tcp|10.1.0.20:5432"].value  # first by name
    capture = listeners["inbound-capture"]
    assert capture.use_original_dst.value and capture.address.socket_address.port_value == 15006
    inbound = listeners["inbound|9080|reviews"]
    assert inbound.bind_to_port.value is False
    assert inbound.address.socket_address.address == "10.1.0.11"
    # A pod not ready yet is no endpoint (but has its identity, for its own sidecar).
    (ratings,) = [
        r.message
        for r in resources[ResourceType.ENDPOINT].values()
        if r.name.endswith("|ratings.shop")
    ]
    addresses = [
        e.endpoint.address.socket_address.address for g in ratings.endpoints for e in g.lb_endpoints
    ]
    assert addresses == ["10.1.0.12"]
    assert state.identity_of("ratings-v1-b", "shop") is not None
    validate(inline_bootstrap(resources), tmp_path)
