"""Translator: names, host routing, and reuse of unchanged services."""

from __future__ import annotations

from envoy.config.route.v3 import route_pb2

from sidemesh.envoy import ProxyId, ResourceType, Translator
from sidemesh.model import MeshState, parse_mesh_document
from tests.conftest import MULTI_SERVICE_MESH

PRODUCTPAGE = ProxyId("productpage-1", "default")


def _domains(state: MeshState, proxy: ProxyId) -> dict[str, list[str]]:
    res = Translator().for_proxy(state, proxy)
    config = res[ResourceType.ROUTE]["outbound-http"].message
    assert isinstance(config, route_pb2.RouteConfiguration)
    return {vh.name: list(vh.domains) for vh in config.virtual_hosts}


def test_resource_names_explain_themselves(multi_service_state: MeshState) -> None:
    res = Translator().for_proxy(multi_service_state, ProxyId("reviews-v1", "default"))
    assert "outbound|9080||reviews.default" in res[ResourceType.CLUSTER]
    assert "outbound|5432||db.default" in res[ResourceType.CLUSTER]
    assert "inbound|9080|reviews" in res[ResourceType.CLUSTER]
    assert set(res[ResourceType.LISTENER]) == {
        "outbound|21015",
        "inbound|9080|reviews",
        "inbound|9090|reviews",
    }
    assert set(res[ResourceType.ENDPOINT]) == set(
        n for n in res[ResourceType.CLUSTER] if n.startswith("outbound|")
    )


def test_host_forms_route_to_the_service(multi_service_state: MeshState) -> None:
    domains = _domains(multi_service_state, PRODUCTPAGE)
    http = domains["reviews.default:9080"]
    for host in ("reviews", "reviews.default", "reviews:9080", "reviews.default.svc:9080"):
        assert host in http
    assert "reviews:9090" in domains["reviews.default:9090"]
    assert "reviews" not in domains["reviews.default:9090"]
    # Port 80 is the default port of a service that serves it.
    assert "api" in domains["api.default:80"]
    # Another namespace's service is reached by its qualified name only.
    assert domains["reviews.other:9080"][:2] == ["reviews.other", "reviews.other.svc"]
    # TCP services have no virtual host.
    assert not any(name.startswith("db.") for name in domains)


def test_short_names_follow_the_proxys_namespace(multi_service_state: MeshState) -> None:
    domains = _domains(multi_service_state, ProxyId("reviews-other", "other"))
    assert "reviews" in domains["reviews.other:9080"]
    assert "reviews" not in domains["reviews.default:9080"]


def test_endpoint_change_retranslates_only_endpoints(multi_service_state: MeshState) -> None:
    translator = Translator()
    before = translator.for_proxy(multi_service_state, PRODUCTPAGE)
    translated = translator.services_translated
    edited = MULTI_SERVICE_MESH.replace("port: 21021", "port: 21029")
    after_state = parse_mesh_document(edited, "mesh.yaml", 2).reuse_unchanged(multi_service_state)
    after = translator.for_proxy(after_state, PRODUCTPAGE)
    assert translator.services_translated == translated
    changed = {
        (t, name) for t in ResourceType for name, r in after[t].items() if before[t][name] is not r
    }
    assert changed == {(ResourceType.ENDPOINT, "outbound|50051||ratings.default")}
    assert before[ResourceType.ROUTE]["outbound-http"] is after[ResourceType.ROUTE]["outbound-http"]


def test_unknown_proxy_is_a_translation_error(multi_service_state: MeshState) -> None:
    import pytest

    from sidemesh.errors import TranslationError

    with pytest.raises(
        TranslationError, match="'nobody' in namespace 'default' is not in the mesh"
    ):
        Translator().for_proxy(multi_service_state, ProxyId("nobody", "default"))


def test_node_id_round_trip() -> None:
    import pytest

    assert ProxyId.parse("sidecar~reviews-v1~default") == ProxyId("reviews-v1", "default")
    with pytest.raises(ValueError, match="not of the form"):
        ProxyId.parse("router~x")


def test_upstreams_get_local_listeners(multi_service_state: MeshState) -> None:
    res = Translator().for_proxy(multi_service_state, PRODUCTPAGE)
    assert {
        "upstream|21005|ratings.default",
        "upstream|21006|db.default",
        "upstream|21007|reviews.default",
    } <= set(res[ResourceType.LISTENER])


def test_gateway_routes_by_prefix_to_outbound_clusters(multi_service_state: MeshState) -> None:
    from envoy.config.listener.v3 import listener_pb2
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2 as hcm_pb2,
    )

    res = Translator().for_proxy(multi_service_state, ProxyId("ingress", "default"))
    listener = res[ResourceType.LISTENER]["gateway|21060|ingress"].message
    assert isinstance(listener, listener_pb2.Listener)
    hcm = hcm_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    routes = [(r.match.prefix, r.route.cluster) for r in hcm.route_config.virtual_hosts[0].routes]
    assert routes == [
        ("/api/", "outbound|80||api.default"),
        ("/reviews", "outbound|9090||reviews.default"),
        ("/", "outbound|9080||productpage.default"),
    ]
    assert hcm.use_remote_address.value is True
    assert multi_service_state.identity_of("ingress", "default") == (
        "spiffe://example.org/ns/default/sa/ingress"
    )
