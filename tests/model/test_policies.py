"""Policy documents in mesh.yaml and included files: Gateway API routes and sidemesh's
own kinds, loaded and checked against the mesh, errors naming file, document and field."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from sidemesh.errors import ConfigError
from sidemesh.model import MeshState, ServiceKey, load_mesh_file, parse_mesh_document
from sidemesh.model.policy.telemetry import LoggedRequests, settings_by_service

MESH = textwrap.dedent(
    """
    services:
      - {name: reviews, ports: [{port: 9080}]}
      - {name: reviews-v1, ports: [{port: 9080}], selector: {version: v1}}
      - {name: reviews-v2, ports: [{port: 9080}], selector: {version: v2}}
      - {name: ratings, ports: [{port: 9080}, {port: 9090, protocol: grpc}]}
    workloads:
      - {name: reviews-1, service: reviews, labels: {version: v1}, port: 21001, appPort: 21002,
         sidecar: {outboundPort: 21003}}
      - {name: reviews-2, service: reviews, labels: {version: v2}, port: 21011, appPort: 21012,
         sidecar: {outboundPort: 21013}}
    """
)

# As the Gateway API docs write a GAMMA canary, apiVersion to the last field.
GAMMA_CANARY = textwrap.dedent(
    """
    apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata:
      name: reviews-canary
      namespace: default
    spec:
      parentRefs:
      - group: ""
        kind: Service
        name: reviews
        port: 9080
      rules:
      - matches:
        - headers:
          - name: end-user
            value: jason
        backendRefs:
        - name: reviews-v2
          port: 9080
      - backendRefs:
        - name: reviews-v1
          port: 9080
          weight: 90
        - name: reviews-v2
          port: 9080
          weight: 10
    """
)


def _load(*documents: str) -> MeshState:
    return parse_mesh_document("\n---\n".join([MESH, *documents]), "mesh.yaml")


def _error(*documents: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(*documents)
    return str(info.value)


def _route(
    rules: str, parent: str = "{kind: Service, group: '', name: reviews, port: 9080}"
) -> str:
    return textwrap.dedent(
        f"""
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {{name: r}}
        spec:
          parentRefs: [{parent}]
          rules: {rules}
        """
    )


def _external(spec: str, name: str = "x") -> str:
    return (
        f"apiVersion: sidemesh.io/v1alpha1\nkind: ExternalService\nmetadata: {{name: {name}}}\n"
        f"spec:\n  {spec}\n"
    )


def _backend_policy(settings: str) -> str:
    """A BackendPolicy named p on reviews, with ``settings`` (one line of ``spec``)."""
    return (
        "apiVersion: sidemesh.io/v1alpha1\nkind: BackendPolicy\nmetadata: {name: p}\n"
        f"spec:\n  targetRefs: [{{name: reviews}}]\n  {settings}\n"
    )


def _gateway(listeners: str, annotations: str = "{}") -> str:
    return (
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
        f"metadata: {{name: public, annotations: {annotations}}}\n"
        f"spec:\n  gatewayClassName: sidemesh\n  listeners: {listeners}\n"
    )


HTTP_LISTENER = "[{name: http, port: 22080, protocol: HTTP}]"


@pytest.mark.parametrize(
    ("documents", "expected"),
    [
        (
            [_gateway("[{name: https, port: 22443, protocol: HTTPS}]")],
            "(Gateway public) spec.listeners[0]: Value error, an HTTPS listener needs tls",
        ),
        (
            [
                _gateway(
                    "[{name: https, port: 22443, protocol: HTTPS, tls: {options: "
                    "{sidemesh.io/certificate-file: c.pem, sidemesh.io/key-file: /k.pem}}}]"
                )
            ],
            "'c.pem' must be an absolute path",
        ),
        (
            [
                _gateway(
                    "[{name: a, port: 22080, protocol: HTTP}, {name: a, port: 22081, protocol: HTTP}]"
                )
            ],
            "listener names must be distinct",
        ),
        (
            [_gateway(HTTP_LISTENER).replace("name: public", "name: reviews-1")],
            "'reviews-1' is already workload reviews-1 in namespace 'default'",
        ),
        (
            [_route("[{backendRefs: [{name: reviews, port: 9080}]}]", parent="{name: nowhere}")],
            "spec.parentRefs[0].name: no Gateway 'nowhere' in namespace 'default' (Gateways: none)",
        ),
        (
            [_gateway(HTTP_LISTENER), _route("[{}]", parent="{name: public, sectionName: https}")],
            "spec.parentRefs[0].sectionName: Gateway default/public has no listener 'https' (listeners: http)",
        ),
        (
            [_gateway(HTTP_LISTENER), _route("[{}]", parent="{name: public, port: 80}")],
            "spec.parentRefs[0].port: Gateway default/public has no listener on port 80",
        ),
        (
            [
                _gateway(HTTP_LISTENER),
                _route("[{backendRefs: [{name: reviews}]}]", parent="{name: public}"),
            ],
            "spec.rules[0].backendRefs[0].port: a route on a Gateway names the port",
        ),
    ],
)
def test_bad_gateways_and_routes_on_them_are_refused(documents: list[str], expected: str) -> None:
    assert expected in _error(*documents)


def test_a_gateway_document_gets_a_gateway_proxy_of_its_name() -> None:
    state = _load(_gateway(HTTP_LISTENER))
    proxy = state.gateways[("public", "default")]
    assert (proxy.port, proxy.routes) == (22080, ())
    assert state.identity_of("public", "default") == "spiffe://cluster.local/ns/default/sa/public"


def _authz(spec: str) -> str:
    return (
        "apiVersion: sidemesh.io/v1alpha1\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: p}}\nspec:\n  {spec}\n"
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "targetRefs: [{name: reviewz}]",
            "(AuthorizationPolicy default/p) spec.targetRefs[0].name: 'reviewz' is not a service",
        ),
        (
            "rules: [{from: [{source: {principals: [reviews]}}]}]",
            "spec.rules[0].from[0].source.principals[0]: 'reviews' is not an identity",
        ),
        (
            "rules: [{from: [{source: {principals: [other.td/ns/default/sa/reviews]}}]}]",
            "is of trust domain 'other.td', the mesh's is 'cluster.local': it can never match",
        ),
        (
            "rules: [{from: [{source: {principals: [a*b]}}]}]",
            "'a*b': '*' only at the start or the end",
        ),
        (
            "rules: [{to: [{operation: {paths: [admin]}}]}]",
            "spec.rules[0].to[0].operation.paths[0]: 'admin' must start with '/'",
        ),
        (
            "rules: [{to: [{operation: {paths: ['/a/*/b']}}]}]",
            "'*' only at the start or the end (use {name} for a segment)",
        ),
        (
            "rules: [{from: [{source: {ipBlocks: [10.0.0.300/8]}}]}]",
            "spec.rules[0].from[0].source.ipBlocks[0]: '10.0.0.300/8' is not an address or CIDR",
        ),
        (
            "rules: [{when: [{key: 'request.cookies[session]', values: [x]}]}]",
            "spec.rules[0].when[0]: Value error, 'request.cookies[session]' is not a condition key",
        ),
        (
            "rules: [{when: [{key: source.ip, values: [not-an-ip]}]}]",
            "spec.rules[0].when[0].values[0]: 'not-an-ip' is not an address or CIDR",
        ),
        (
            "rules: [{when: [{key: destination.port, notValues: [http]}]}]",
            "spec.rules[0].when[0].notValues[0]: 'http' is not a port number (1-65535)",
        ),
        (
            "action: PERMIT",
            "spec.action: 'PERMIT' is not one of ALLOW, DENY, AUDIT",
        ),
    ],
)
def test_bad_authorization_policies_are_refused(spec: str, expected: str) -> None:
    assert expected in _error(_authz(spec))


def test_an_identity_no_workload_has_is_a_warning() -> None:
    state = _load(_authz("rules: [{from: [{source: {serviceAccounts: [default/nobody]}}]}]"))
    assert any("no workload runs as default/nobody (yet)" in w for w in state.warnings)


def test_an_unknown_outbound_traffic_mode_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_mesh_document("mesh: {outboundTrafficPolicy: {mode: DENY}}\n", "mesh.yaml")
    assert "mesh.outboundTrafficPolicy.mode: 'DENY' is not one of ALLOW_ANY, REGISTRY_ONLY" in str(
        info.value
    )


def test_two_external_services_may_not_declare_one_host_and_port() -> None:
    message = _error(
        _external("hosts: [api.example.com]\n  ports: [{port: 80}]", "one"),
        _external("hosts: [api.example.com]\n  ports: [{port: 80}]", "two"),
    )
    assert (
        "document 3 (ExternalService default/two) spec.hosts[0]: api.example.com:80 is "
        "also declared by document 2 (ExternalService default/one)"
    ) in message


def test_a_gamma_route_written_for_kubernetes_loads_unchanged() -> None:
    state = _load(GAMMA_CANARY)
    (route,) = state.policies.http_routes
    assert route.metadata.namespace == "default"
    assert [r.weight for r in route.spec.rules[1].backend_refs] == [90, 10]
    assert route.spec.rules[0].matches[0].headers[0].name == "end-user"
    assert state.warnings == ()


def test_a_service_selects_workloads_by_labels_beside_those_naming_it() -> None:
    state = _load()
    names = lambda svc: sorted(w.name for w in state.workloads_of(ServiceKey(svc, "default")))  # noqa: E731
    assert names("reviews") == ["reviews-1", "reviews-2"]
    assert names("reviews-v1") == ["reviews-1"]
    assert names("reviews-v2") == ["reviews-2"]
    # Both identities may answer for reviews-v2: the workloads' own service accounts.
    assert state.identities_of(ServiceKey("reviews-v2", "default")) == (
        "spiffe://cluster.local/ns/default/sa/reviews",
    )


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (
            _route(
                "[{backendRefs: [{name: reviews-v1, port: 9080, weight: 0}, {name: reviews-v2, port: 9080, weight: 0}]}]"
            ),
            "mesh.yaml: document 2 (HTTPRoute default/r) spec.rules[0].backendRefs: every weight is 0",
        ),
        (
            _route("[{backendRefs: [{name: reviews-v1, port: 9080, weight: -1}]}]"),
            "mesh.yaml: document 2 (HTTPRoute r) spec.rules[0].backendRefs[0].weight: Input should be greater than or equal to 0",
        ),
        (
            _route(
                "[{matches: [{path: {type: RegularExpression, value: '/(?=a)b'}}], backendRefs: [{name: reviews, port: 9080}]}]"
            ),
            "spec.rules[0].matches[0].path.value: '/(?=a)b' is not a valid RE2 regex",
        ),
        (
            _route(
                "[{timeouts: {request: 1s, backendRequest: 2s}, backendRefs: [{name: reviews, port: 9080}]}]"
            ),
            "spec.rules[0].timeouts.backendRequest: 2s is longer than the request timeout 1s",
        ),
        (
            _route("[{timeouts: {request: 10 seconds}}]"),
            "spec.rules[0].timeouts.request: Value error, '10 seconds' is not a duration",
        ),
        (
            _route("[{}]", parent="{kind: Service, group: '', name: reviewz}"),
            "spec.parentRefs[0].name: 'reviewz' is not a service in namespace 'default'",
        ),
        (
            _route("[{}]", parent="{kind: Service, group: '', name: reviews, port: 80}"),
            "spec.parentRefs[0].port: 80 is not a port of service reviews.default",
        ),
        (
            _route("[{backendRefs: [{name: ratings}]}]"),
            "spec.rules[0].backendRefs[0].port: service ratings.default has 2 ports: name one",
        ),
        (
            _route(
                "[{filters: [{type: ExtensionRef, extensionRef: {group: sidemesh.io, kind: FaultInjection, name: slow}}]}]"
            ),
            "spec.rules[0].filters[0].extensionRef.name: no FaultInjection default/slow",
        ),
        (
            _route("[{filters: [{type: RequestHeaderModifier, urlRewrite: {hostname: x}}]}]"),
            "spec.rules[0].filters[0]: Value error, a filter of type RequestHeaderModifier sets requestHeaderModifier and nothing else",
        ),
        (
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\n",
            "mesh.yaml: document 2 kind: 'VirtualService' of 'networking.istio.io/v1' is not a kind sidemesh knows",
        ),
        (
            _backend_policy("subsets: [{labels: {track: canary}}]"),
            "spec.subsets[0].labels: no workload of reviews.default has the label 'track' (labels: version)",
        ),
        (
            _backend_policy("loadBalancer: {type: RingHash}"),
            "spec.loadBalancer: Value error, RingHash needs hashOn",
        ),
        (
            _backend_policy("rateLimit: {per: 1s}"),
            "spec.rateLimit: Value error, needs requests (for the whole service) or routes, or both",
        ),
        (
            _backend_policy(
                "rateLimit: {routes: [{match: {path: {type: RegularExpression, value: '/(?=a)b'}}, requests: 1}]}"
            ),
            "spec.rateLimit.routes[0].match.path.value: '/(?=a)b' is not a valid RE2 regex",
        ),
        (
            _external("hosts: [reviews.default]\n  ports: [{port: 80}]"),
            "(ExternalService default/x) spec.hosts[0]: 'reviews.default' is the name of mesh service reviews.default",
        ),
        (
            _external("hosts: [api.example.com]\n  ports: [{port: 80}, {port: 80}]"),
            "spec.ports[1].port: port 80 is listed twice",
        ),
        (
            _external("hosts: [API.example.com]\n  ports: [{port: 80}]"),
            "spec.hosts[0]: 'API.example.com' is not a valid name",
        ),
        (
            _external("hosts: [a.example]\n  ports: [{port: 25, protocol: TCP}]"),
            "spec.ports[0].protocol: Input should be 'HTTP'",
        ),
        (
            _external(
                "hosts: [a.example]\n  ports: [{port: 80}]\n  endpoints: [{address: 999.1.1.1}]"
            ),
            "spec.endpoints[0].address: '999.1.1.1' is neither an IP address nor a host name",
        ),
        (
            _external("hosts: [a.example]\n  ports: [{port: 80}]\n  tls: {caCertificates: ca.pem}"),
            "spec.tls: Value error, caCertificates 'ca.pem' must be an absolute path",
        ),
    ],
)
def test_bad_policies_are_refused_naming_document_and_field(document: str, expected: str) -> None:
    assert expected in _error(document)


def test_every_problem_of_every_document_is_reported_at_once() -> None:
    message = _error(
        _route("[{backendRefs: [{name: reviews, port: 9080, weight: 0}]}]"),
        _route("[{}]", parent="{kind: Service, group: '', name: nope}").replace(
            "name: r}", "name: r2}"
        ),
    )
    assert (
        "document 2 (HTTPRoute default/r)" in message
        and "document 3 (HTTPRoute default/r2)" in message
    )


def test_an_unknown_backend_is_accepted_with_a_warning_as_the_gateway_api_says() -> None:
    state = _load(_route("[{backendRefs: [{name: reviews-v3, port: 9080}]}]"))
    assert len(state.policies.http_routes) == 1
    (warning,) = state.warnings
    assert warning.startswith(
        "mesh.yaml: document 2 (HTTPRoute default/r) spec.rules[0].backendRefs[0].name:"
    )
    assert "its share of requests is answered 500" in warning


def test_a_subset_selecting_no_workload_is_a_warning() -> None:
    state = _load(
        textwrap.dedent(
            """
            apiVersion: sidemesh.io/v1alpha1
            kind: BackendPolicy
            metadata: {name: p}
            spec:
              targetRefs: [{name: reviews}]
              subsets: [{labels: {version: v3}, loadBalancer: {type: LeastRequest}}]
            """
        )
    )
    assert any("selects no workload of reviews.default" in w for w in state.warnings)


def test_two_routes_with_the_same_match_are_reported_with_the_winner() -> None:
    first = _route("[{matches: [{path: {value: /x}}], backendRefs: [{name: reviews, port: 9080}]}]")
    second = first.replace("name: r}", "name: a-first}")
    state = _load(first, second)
    (warning,) = state.warnings
    assert "(HTTPRoute default/r) spec.rules[0]: matches the same requests as" in warning
    assert "(HTTPRoute default/a-first) spec.rules[0], which wins" in warning


def test_policies_come_from_included_files_with_their_names_in_errors(tmp_path: Path) -> None:
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes" / "canary.yaml").write_text(GAMMA_CANARY)
    (tmp_path / "routes" / "faults.yaml").write_text(
        "apiVersion: sidemesh.io/v1alpha1\nkind: FaultInjection\nmetadata: {name: slow}\n"
        "spec: {delay: {fixedDelay: 1s, percentage: 50}}\n"
    )
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(MESH + "include: ['routes/*.yaml']\n")
    state = load_mesh_file(mesh)
    assert len(state.policies) == 2
    (tmp_path / "routes" / "faults.yaml").write_text(
        "apiVersion: sidemesh.io/v1alpha1\nkind: FaultInjection\nmetadata: {name: slow}\nspec: {}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_mesh_file(mesh)
    assert str(info.value).startswith(
        f"{mesh}: routes/faults.yaml document 1 (FaultInjection slow) spec: Value error, "
        "a FaultInjection has a delay, an abort, or both"
    )
    mesh.write_text(MESH + "include: [routes/missing.yaml]\n")
    with pytest.raises(ConfigError, match=r"include\[0\]: cannot read .*missing.yaml"):
        load_mesh_file(mesh)


def test_policies_survive_the_plan_and_keep_their_identity_across_versions() -> None:
    state = _load(GAMMA_CANARY)
    again = MeshState.from_plan(json.loads(json.dumps(state.to_plan())))
    assert again.policies == state.policies
    edited = parse_mesh_document(
        "\n---\n".join([MESH.replace("21002", "21005"), GAMMA_CANARY]), "mesh.yaml", version=2
    ).reuse_unchanged(state)
    assert edited.policies.http_routes[0] is state.policies.http_routes[0]


def test_fields_accepted_but_not_applied_are_warnings_not_silence() -> None:
    route = _route("[{backendRefs: [{name: reviews, port: 9080}]}]").replace(
        "spec:\n", "spec:\n  hostnames: [reviews.example.com]\n"
    )
    route = route.replace("port: 9080}]\n", "port: 9080, sectionName: http}]\n", 1)
    policy = textwrap.dedent(
        """
        apiVersion: sidemesh.io/v1alpha1
        kind: BackendPolicy
        metadata: {name: p}
        spec:
          targetRefs: [{name: reviews}]
          subsets: [{labels: {version: v2}, loadBalancer: {type: LeastRequest}}]
        """
    )
    warnings = "\n".join(_load(route, policy).warnings)
    assert (
        "(HTTPRoute default/r) spec.hostnames: not used by a route whose parent is a Service"
        in warnings
    )
    assert "spec.parentRefs[0].sectionName: not used" in warnings
    assert "(BackendPolicy default/p) spec.subsets: checked but not applied yet" in warnings


def _telemetry(spec: str, name: str = "tracing") -> str:
    return (
        f"apiVersion: sidemesh.io/v1alpha1\nkind: Telemetry\nmetadata: {{name: {name}}}\n"
        f"spec: {spec}\n"
    )


@pytest.mark.parametrize(
    ("documents", "expected"),
    [
        (
            [_telemetry("{targetRefs: [{name: nowhere}], tracing: {randomSamplingPercentage: 5}}")],
            "document 2 (Telemetry default/tracing) spec.targetRefs[0].name: 'nowhere' is not "
            "a service in namespace 'default'",
        ),
        (
            [_telemetry("{tracing: {randomSamplingPercentage: 101}}")],
            "spec.tracing.randomSamplingPercentage: Input should be less than or equal to 100",
        ),
        (
            [
                _telemetry("{tracing: {randomSamplingPercentage: 5}}", "a"),
                _telemetry("{tracing: {randomSamplingPercentage: 50}}", "b"),
            ],
            "document 3 (Telemetry default/b) spec: document 2 (Telemetry default/a) "
            "also applies to every service of namespace 'default': keep one",
        ),
        (
            [
                _telemetry(
                    "{targetRefs: [{name: ratings}], tracing: {randomSamplingPercentage: 5}}"
                ),
                _telemetry(
                    "{targetRefs: [{name: ratings}], tracing: {randomSamplingPercentage: 9}}", "b"
                ),
            ],
            "document 3 (Telemetry default/b) spec: document 2 (Telemetry "
            "default/tracing) also applies to ratings.default: keep one",
        ),
    ],
)
def test_bad_telemetry_is_refused(documents: list[str], expected: str) -> None:
    assert expected in _error(*documents)


def test_a_bad_collector_address_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        parse_mesh_document("mesh: {tracing: {collector: otel}}\n" + MESH, "mesh.yaml")
    assert "mesh.tracing.collector: Value error, 'otel' is not HOST:PORT" in str(info.value)


def test_telemetry_naming_a_service_overrides_its_namespace_and_the_mesh() -> None:
    state = _load(
        _telemetry("{tracing: {randomSamplingPercentage: 20}}", "namespace-wide"),
        _telemetry(
            "{targetRefs: [{name: ratings}], tracing: {randomSamplingPercentage: 100},"
            " accessLogging: {requests: All}}"
        ),
    )
    assert state.mesh.tracing.random_sampling_percentage == 1.0  # the mesh's default
    settings = settings_by_service(state.policies.telemetry, state.services)
    ratings, reviews = (
        settings[ServiceKey("ratings", "default")],
        settings[ServiceKey("reviews", "default")],
    )
    assert ratings.tracing is not None and ratings.tracing.random_sampling_percentage == 100
    assert ratings.access_logging is not None
    assert ratings.access_logging.requests is LoggedRequests.ALL
    assert reviews.tracing is not None and reviews.tracing.random_sampling_percentage == 20
    assert reviews.access_logging is None
