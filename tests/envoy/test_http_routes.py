"""Gateway API routes → Envoy routes: which routes apply to a caller, in which order,
and what each rule becomes (pure translation, no Envoy needed; the generated config is
checked by a real Envoy in test_validate)."""

from __future__ import annotations

import textwrap

from envoy.config.route.v3 import route_components_pb2

from sidemesh.envoy.outbound.http_routes import applicable_routes, grpc_routes, http_routes
from sidemesh.model import MeshState, ServiceKey, ServicePort, parse_mesh_document

MESH = textwrap.dedent(
    """
    services:
      - {name: reviews, ports: [{port: 9080}]}
      - {name: reviews-v1, ports: [{port: 9080}], selector: {version: v1}}
      - {name: reviews-v2, ports: [{port: 9080}], selector: {version: v2}}
      - {name: reviews, namespace: shop, ports: [{port: 9080}]}
      - {name: greeter, ports: [{port: 50051, protocol: grpc}]}
    """
)
PORT = ServicePort(port=9080)
REVIEWS = ServiceKey("reviews", "default")


def _state(*routes: str) -> MeshState:
    return parse_mesh_document("\n---\n".join([MESH, *routes]), "mesh.yaml")


def _route(name: str, rules: str, namespace: str = "default", parent: str = "reviews") -> str:
    return textwrap.dedent(
        f"""
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {{name: {name}, namespace: {namespace}}}
        spec:
          parentRefs: [{{group: "", kind: Service, name: {parent}, namespace: default}}]
          rules: {rules}
        """
    )


def _cluster(key: ServiceKey, port: int) -> str:
    return f"outbound|{port}||{key}"


def _translate(
    state: MeshState, caller_namespace: str = "default"
) -> list[route_components_pb2.Route]:
    routes = applicable_routes(state.policies.http_routes, REVIEWS, 9080, caller_namespace)
    return http_routes(
        routes,  # type: ignore[arg-type]
        PORT.port,
        state.policies,
        _cluster,
        15.0,
        route_components_pb2.RetryPolicy(retry_on="5xx"),
    )


def test_more_specific_matches_come_first_whatever_the_order_written() -> None:
    state = _state(
        _route(
            "r",
            """
            - matches: [{path: {type: PathPrefix, value: /}}]
              backendRefs: [{name: reviews-v1, port: 9080}]
            - matches: [{path: {type: PathPrefix, value: /api}}]
              backendRefs: [{name: reviews-v1, port: 9080}]
            - matches: [{path: {type: PathPrefix, value: /api}, headers: [{name: end-user, value: jason}]}]
              backendRefs: [{name: reviews-v2, port: 9080}]
            - matches: [{path: {type: Exact, value: /api/health}}]
              backendRefs: [{name: reviews-v1, port: 9080}]
            """,
        )
    )
    names = [r.name for r in _translate(state)]
    assert names == [
        "default/r/rule-3/0",  # Exact
        "default/r/rule-2/0",  # /api with a header
        "default/r/rule-1/0",  # /api
        "default/r/rule-0/0",  # /
    ]


def test_a_path_prefix_keeps_to_segment_boundaries() -> None:
    (route,) = _translate(
        _state(
            _route(
                "r",
                "[{matches: [{path: {value: /v2/}}], backendRefs: [{name: reviews-v2, port: 9080}]}]",
            )
        )
    )
    assert route.match.path_separated_prefix == "/v2"


def test_weights_become_weighted_clusters_and_a_missing_backend_answers_500() -> None:
    (route,) = _translate(
        _state(
            _route(
                "canary",
                "[{backendRefs: [{name: reviews-v1, port: 9080, weight: 90}, {name: reviews-v3, port: 9080, weight: 10}]}]",
            )
        )
    )
    clusters = [(c.name, c.weight.value) for c in route.route.weighted_clusters.clusters]
    assert clusters == [
        ("outbound|9080||reviews-v1.default", 90),
        ("outbound|9080||reviews-v3.default", 10),
    ]
    assert route.route.cluster_not_found_response_code == (
        route_components_pb2.RouteAction.INTERNAL_SERVER_ERROR
    )


def test_a_consumer_route_applies_to_its_namespace_only_and_wins_there() -> None:
    state = _state(
        _route("producer", "[{backendRefs: [{name: reviews-v1, port: 9080}]}]"),
        _route(
            "consumer",
            "[{backendRefs: [{name: reviews-v2, port: 9080, namespace: default}]}]",
            namespace="shop",
        ),
    )
    assert [r.name for r in _translate(state, "default")] == ["default/producer/rule-0/0"]
    assert [r.name for r in _translate(state, "shop")] == ["shop/consumer/rule-0/0"]
    assert [r.name for r in _translate(state, "other")] == ["default/producer/rule-0/0"]


def test_filters_become_header_changes_redirects_rewrites_mirrors_and_faults() -> None:
    fault = textwrap.dedent(
        """
        apiVersion: sidemesh.io/v1alpha1
        kind: FaultInjection
        metadata: {name: slow}
        spec: {delay: {fixedDelay: 1s, percentage: 50}}
        """
    )
    state = _state(
        fault,
        _route(
            "r",
            """
            - matches: [{path: {value: /old}}]
              filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: example.com, port: 8443, statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}}]
            - matches: [{path: {value: /api}}]
              filters:
                - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Env, value: canary}], remove: [x-debug]}}
                - {type: URLRewrite, urlRewrite: {hostname: internal, path: {type: ReplaceFullPath, replaceFullPath: /v1/api}}}
                - {type: RequestMirror, requestMirror: {backendRef: {name: reviews-v2, port: 9080}, percent: 25}}
                - {type: ExtensionRef, extensionRef: {group: sidemesh.io, kind: FaultInjection, name: slow}}
              backendRefs: [{name: reviews-v1, port: 9080}]
              timeouts: {request: 3s, backendRequest: 1s}
              retry: {attempts: 4, codes: [502, 503], backoff: 100ms}
            """,
        ),
    )
    old, api = _translate(state)  # equally specific: in the order written
    assert old.redirect.scheme_redirect == "https" and old.redirect.host_redirect == "example.com"
    assert old.redirect.port_redirect == 8443 and old.redirect.prefix_rewrite == "/new"
    assert old.redirect.response_code == route_components_pb2.RedirectAction.MOVED_PERMANENTLY
    assert [(h.header.key, h.header.value) for h in api.request_headers_to_add] == [
        ("x-env", "canary")
    ]
    assert list(api.request_headers_to_remove) == ["x-debug"]
    assert api.route.host_rewrite_literal == "internal"
    assert api.route.regex_rewrite.substitution == "/v1/api"
    (mirror,) = api.route.request_mirror_policies
    assert mirror.cluster == "outbound|9080||reviews-v2.default"
    assert mirror.runtime_fraction.default_value.numerator == 250_000
    assert "envoy.filters.http.fault" in api.typed_per_filter_config
    assert api.route.timeout.seconds == 3 and api.route.retry_policy.per_try_timeout.seconds == 1
    assert api.route.retry_policy.num_retries.value == 4
    assert list(api.route.retry_policy.retriable_status_codes) == [502, 503]


def test_a_rule_with_no_backend_answers_500() -> None:
    (route,) = _translate(_state(_route("r", "[{matches: [{path: {value: /x}}]}]")))
    assert route.direct_response.status == 500


def test_grpc_routes_match_service_and_method() -> None:
    state = _state(
        textwrap.dedent(
            """
            apiVersion: gateway.networking.k8s.io/v1
            kind: GRPCRoute
            metadata: {name: g}
            spec:
              parentRefs: [{group: "", kind: Service, name: greeter}]
              rules:
                - matches: [{method: {service: helloworld.Greeter}}]
                  backendRefs: [{name: greeter, port: 50051}]
                - matches: [{method: {service: helloworld.Greeter, method: SayHello}}]
                  backendRefs: [{name: greeter, port: 50051}]
            """
        )
    )
    greeter = ServiceKey("greeter", "default")
    routes = applicable_routes(state.policies.grpc_routes, greeter, 50051, "default")
    out = grpc_routes(
        routes,  # type: ignore[arg-type]
        50051,
        state.policies,
        _cluster,
        route_components_pb2.RetryPolicy(),
    )
    assert [r.match.path or r.match.prefix for r in out] == [
        "/helloworld.Greeter/SayHello",
        "/helloworld.Greeter/",
    ]
