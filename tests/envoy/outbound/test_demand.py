"""Which services a sidecar on demand holds, and why; the answer to each Host it asks
for. Translation only (pure); the protocol is in tests/xds/test_on_demand.py and real
Envoys in tests/e2e/test_on_demand.py."""

from __future__ import annotations

import textwrap

from envoy.config.route.v3 import route_components_pb2

from sidemesh.envoy import ProxyId, ResourceType, Translator
from sidemesh.envoy.outbound.demand import (
    ANCHOR_HOST,
    Caller,
    Reason,
    alias,
    may_call,
    resolve_host,
)
from sidemesh.model import (
    AuthorizationDefault,
    MeshState,
    ServiceKey,
    Upstream,
    parse_mesh_document,
)

RATINGS_NS = "default"
CALLER = ProxyId("productpage-1", "default")


def _mesh(policies: str = "", calls: str = "[]") -> MeshState:
    text = textwrap.dedent(
        f"""
        mesh:
          trustDomain: example.org
        services:
          - {{name: productpage, ports: [{{port: 9080}}]}}
          - {{name: reviews, ports: [{{port: 9080}}]}}
          - {{name: reviews-v2, selector: {{app: reviews, version: v2}}, ports: [{{port: 9080}}]}}
          - {{name: ratings, ports: [{{port: 9080}}]}}
          - {{name: details, ports: [{{port: 9080}}]}}
          - {{name: secret, ports: [{{port: 9080}}]}}
        workloads:
          - {{name: productpage-1, service: productpage, port: 21001, appPort: 21002,
              sidecar: {{outboundPort: 21003}}, calls: {calls}}}
          - {{name: reviews-1, address: 127.0.0.2, service: reviews, port: 21011, appPort: 21012,
              labels: {{app: reviews, version: v1}}}}
          - {{name: reviews-2, address: 127.0.0.3, service: reviews, port: 21013, appPort: 21014,
              labels: {{app: reviews, version: v2}}}}
          - {{name: ratings-1, address: 127.0.0.4, service: ratings, port: 21021, appPort: 21022}}
          - {{name: details-1, address: 127.0.0.5, service: details, port: 21031, appPort: 21032}}
          - {{name: secret-1, address: 127.0.0.6, service: secret, port: 21041, appPort: 21042}}
        """
    )
    if policies:
        text += "---\n" + textwrap.dedent(policies)
    return parse_mesh_document(text, "mesh.yaml")


def _clusters(resources: object) -> set[str]:
    return {n for n in resources[ResourceType.CLUSTER] if n.startswith("outbound|")}  # type: ignore[index]


def test_a_sidecar_on_demand_starts_with_only_what_it_declares() -> None:
    state = _mesh(calls="[details]")
    resources = Translator().for_proxy(state, CALLER, frozenset())
    assert resources.held == {ServiceKey("details", "default"): Reason.DECLARED}
    assert _clusters(resources) == {"outbound|9080||details.default"}
    assert set(resources[ResourceType.ENDPOINT]) == {"outbound|9080||details.default"}
    assert set(resources[ResourceType.VIRTUAL_HOST]) == {
        f"outbound-http/{ANCHOR_HOST}",
        "outbound-http/details.default:9080",
    }
    (route,) = resources[ResourceType.ROUTE].values()
    assert route.message.HasField("vhds")
    # No catch-all: it would answer every Host the sidecar does not hold yet.
    assert not any("*" in v.domains for v in route.message.virtual_hosts)


def test_a_host_asked_for_is_held_and_answered_by_its_virtual_host() -> None:
    state = _mesh()
    asked = frozenset({alias("ratings:9080"), alias("ratings.default.svc")})
    resources = Translator().for_proxy(state, CALLER, asked)
    assert resources.held == {ServiceKey("ratings", "default"): Reason.ON_DEMAND}
    assert resources.aliases == {
        alias("ratings:9080"): "outbound-http/ratings.default:9080",
        alias("ratings.default.svc"): "outbound-http/ratings.default:9080",
    }
    assert _clusters(resources) == {"outbound|9080||ratings.default"}


def test_a_routes_backends_come_with_the_service() -> None:
    state = _mesh(
        """
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {name: reviews-canary}
        spec:
          parentRefs: [{kind: Service, name: reviews, port: 9080}]
          rules:
            - backendRefs:
                - {name: reviews, port: 9080, weight: 90}
                - {name: reviews-v2, port: 9080, weight: 10}
        """
    )
    resources = Translator().for_proxy(state, CALLER, frozenset({alias("reviews")}))
    assert resources.held == {
        ServiceKey("reviews", "default"): Reason.ON_DEMAND,
        ServiceKey("reviews-v2", "default"): Reason.BACKEND,
    }
    assert _clusters(resources) == {
        "outbound|9080||reviews.default",
        "outbound|9080||reviews-v2.default",
    }
    # The backend's own Host is not answered until asked for.
    assert "outbound-http/reviews-v2.default:9080" not in resources[ResourceType.VIRTUAL_HOST]


DENY_PRODUCTPAGE = """
apiVersion: sidemesh.io/v1alpha1
kind: AuthorizationPolicy
metadata: {name: only-reviews}
spec:
  targetRefs: [{kind: Service, name: secret}]
  action: ALLOW
  rules:
    - from: [{source: {principals: ["example.org/ns/default/sa/reviews"]}}]
"""


def test_a_service_the_caller_may_not_call_is_never_sent_and_its_host_refused() -> None:
    state = _mesh(DENY_PRODUCTPAGE, calls="[secret]")
    resources = Translator().for_proxy(state, CALLER, frozenset({alias("secret")}))
    assert resources.held == {}
    assert _clusters(resources) == set()
    assert not resources[ResourceType.ENDPOINT]
    answer = resources[ResourceType.VIRTUAL_HOST][resources.aliases[alias("secret")] or ""]
    vhost = answer.message
    assert isinstance(vhost, route_components_pb2.VirtualHost)
    assert list(vhost.domains) == ["secret"]
    (route,) = vhost.routes
    assert route.direct_response.status == 403
    assert "secret.default does not accept calls" in route.direct_response.body.inline_string


def test_a_policy_naming_the_caller_preloads_the_service() -> None:
    state = _mesh(DENY_PRODUCTPAGE.replace("sa/reviews", "sa/productpage"))
    resources = Translator().for_proxy(state, CALLER, frozenset())
    assert resources.held == {ServiceKey("secret", "default"): Reason.POLICY}


def test_a_host_outside_the_mesh_gets_the_way_out_for_that_host() -> None:
    state = _mesh()
    resources = Translator().for_proxy(state, CALLER, frozenset({alias("example.com")}))
    assert resources.held == {}
    answer = resources[ResourceType.VIRTUAL_HOST][resources.aliases[alias("example.com")] or ""]
    assert list(answer.message.domains) == ["example.com"]  # type: ignore[attr-defined]


def test_a_known_service_on_a_port_it_does_not_serve_is_no_host() -> None:
    state = _mesh()
    resources = Translator().for_proxy(state, CALLER, frozenset({alias("ratings:1234")}))
    assert resources.aliases == {alias("ratings:1234"): None}


def test_resolving_hosts_as_the_domains_do() -> None:
    services = _mesh().services
    ns = RATINGS_NS
    assert resolve_host("ratings", ns, services) == ServiceKey("ratings", "default")
    assert resolve_host("ratings:9080", ns, services) == ServiceKey("ratings", "default")
    assert resolve_host("Ratings.default.svc:9080", ns, services) == ServiceKey(
        "ratings", "default"
    )
    assert resolve_host("ratings", "other", services) is None
    assert resolve_host("ratings.default.svc.cluster.local", ns, services) is None
    assert resolve_host("example.com", ns, services) is None


def test_may_call_says_no_only_when_every_request_is_refused() -> None:
    caller = Caller("spiffe://example.org/ns/default/sa/productpage", "default", "productpage")
    policies = _mesh(DENY_PRODUCTPAGE).policies.authorization_policies
    assert not may_call(caller, policies, AuthorizationDefault.ALLOW)
    reviews = Caller("spiffe://example.org/ns/default/sa/reviews", "default", "reviews")
    assert may_call(reviews, policies, AuthorizationDefault.ALLOW)
    assert may_call(caller, (), AuthorizationDefault.ALLOW)
    assert not may_call(caller, (), AuthorizationDefault.DENY)
    by_path = _mesh(
        DENY_PRODUCTPAGE.replace("action: ALLOW", "action: DENY").replace(
            "- from:", "- to: [{operation: {paths: [/admin]}}]\n      from:"
        )
    ).policies.authorization_policies
    # A DENY of some paths leaves the others: the caller may still call.
    reviews_denied = Caller("spiffe://example.org/ns/default/sa/reviews", "default", "reviews")
    assert may_call(reviews_denied, by_path, AuthorizationDefault.ALLOW)


def test_an_upstream_is_held_even_where_policies_refuse_the_caller() -> None:
    """Its listener needs the cluster; the callee's RBAC refuses each request."""
    text_state = _mesh(DENY_PRODUCTPAGE)
    caller = text_state.workload("productpage-1", "default")
    assert caller is not None
    upstream = caller.model_copy(
        update={"upstreams": (Upstream(service="secret", port=9080, local_port=21009),)}
    )
    state = MeshState(
        2,
        text_state.mesh,
        text_state.services,
        {**text_state.workloads, ("productpage-1", "default"): upstream},
        text_state.gateways,
        text_state.policies,
    )
    resources = Translator().for_proxy(state, CALLER, frozenset())
    assert resources.held == {ServiceKey("secret", "default"): Reason.DECLARED}
    assert "outbound|9080||secret.default" in resources[ResourceType.CLUSTER]


def test_without_mtls_no_identity_rule_is_judged_before_the_call() -> None:
    caller = Caller("spiffe://example.org/ns/default/sa/productpage", "default", "productpage")
    policies = _mesh(DENY_PRODUCTPAGE).policies.authorization_policies
    assert may_call(caller, policies, AuthorizationDefault.DENY, mtls=False)


def test_namespaces_are_matched_as_written_as_the_callee_does() -> None:
    caller = Caller("spiffe://example.org/ns/default/sa/productpage", "default", "productpage")
    deny_star = _mesh(
        DENY_PRODUCTPAGE.replace("action: ALLOW", "action: DENY").replace(
            'principals: ["example.org/ns/default/sa/reviews"]', 'namespaces: ["*"]'
        )
    ).policies.authorization_policies
    assert may_call(caller, deny_star, AuthorizationDefault.ALLOW)


def test_a_host_an_external_service_serves_is_left_to_the_route_configuration() -> None:
    state = _mesh(
        """
        apiVersion: sidemesh.io/v1alpha1
        kind: ExternalService
        metadata: {name: payments}
        spec:
          hosts: [api.payments.example]
          ports: [{port: 80, protocol: HTTP}]
        """
    )
    resources = Translator().for_proxy(state, CALLER, frozenset({alias("api.payments.example")}))
    assert resources.aliases == {alias("api.payments.example"): None}
