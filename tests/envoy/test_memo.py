"""The translator's memo: a change to one input rebuilds exactly the resources built
from it, and every other resource of every proxy is the very same object as before.

Each test edits one kind of input in mesh.yaml, loads it as a reload does (a new state,
``reuse_unchanged`` against the last), translates every proxy before and after with
one translator, and compares: which (proxy, type, name) are not the same object, and
which entries were built. The expected sets are written out, not computed, so they
state what depends on what. A later input kind (a policy) gets a test of its own here.
"""

from __future__ import annotations

from collections import Counter

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from sidemesh.envoy import ProxyId, Resource, ResourceType, Translator
from sidemesh.envoy.translator import (
    BACKENDS,
    ENDPOINTS,
    GATEWAY_LISTENER,
    INBOUND_CLUSTER,
    INBOUND_LISTENER,
    OUTBOUND_CLUSTER,
    OUTBOUND_ROUTES,
    UPSTREAM_LISTENER,
    VIRTUAL_HOSTS,
)
from sidemesh.model import MeshState, parse_mesh_document
from tests.conftest import MULTI_SERVICE_MESH

Change = tuple[str, str, str]
"""(proxy, resource type, resource name)"""

SIDECARS = (
    "productpage-1",
    "reviews-v1",
    "reviews-v2",
    "ratings-1",
    "db-1",
    "api-1",
    "reviews-other",
)
EVERY_PROXY = (*SIDECARS, "ingress")


def _edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} is not once in the mesh"
    return text.replace(old, new)


# The shared multi-service mesh, with one service (db) that sets its own mTLS mode, so
# a change of the mesh's mode shows what follows it and what does not.
BASE = _edit(
    MULTI_SERVICE_MESH,
    "  - name: db\n    ports: [{port: 5432, protocol: tcp}]\n",
    "  - name: db\n    mtls: STRICT\n    ports: [{port: 5432, protocol: tcp}]\n",
)


def _translate_all(translator: Translator, state: MeshState) -> dict[Change, Resource]:
    out: dict[Change, Resource] = {}
    for name, namespace in [*state.workloads, *state.gateways]:
        resources = translator.for_proxy(state, ProxyId(name, namespace))
        for rtype in ResourceType:
            for resource_name, resource in resources[rtype].items():
                out[(name, rtype.short, resource_name)] = resource
    return out


def _rebuilt_by(old: str, new: str, base: str = BASE) -> tuple[set[Change], Counter[str]]:
    """What is not the same object after the edit, and what was built for it."""
    translator = Translator()
    first = parse_mesh_document(base, "mesh.yaml", 1)
    before = _translate_all(translator, first)
    assert set(p for p, _, _ in before) >= set(EVERY_PROXY)
    built_before = translator.builds.copy()
    second = parse_mesh_document(_edit(base, old, new), "mesh.yaml", 2).reuse_unchanged(first)
    after = _translate_all(translator, second)
    changed = {c for c in before.keys() | after.keys() if before.get(c) is not after.get(c)}
    return changed, translator.builds - built_before


def _shared(rtype: str, name: str, proxies: tuple[str, ...] = EVERY_PROXY) -> set[Change]:
    """A resource every proxy (or every sidecar) shares."""
    return {(proxy, rtype, name) for proxy in proxies}


def test_nothing_is_rebuilt_when_nothing_changed() -> None:
    changed, built = _rebuilt_by("mesh:", "mesh:")
    assert changed == set()
    assert built == Counter()


def test_a_services_ports_rebuild_only_what_is_built_from_them() -> None:
    # reviews' gRPC port becomes plain HTTP: its cluster no longer speaks HTTP/2, its
    # route gets the unary timeout (in both namespaces' route configurations), and so
    # does the gateway's route to it; its workloads' inbound side follows. The port's
    # endpoints and everything of reviews' port 9080 stay.
    changed, built = _rebuilt_by(
        "{port: 9090, protocol: grpc, name: grpc}", "{port: 9090, protocol: http, name: grpc}"
    )
    assert changed == (
        _shared("clusters", "outbound|9090||reviews.default")
        | _shared("routes", "outbound-http", SIDECARS)
        | {
            ("reviews-v1", "clusters", "inbound|9090|reviews"),
            ("reviews-v2", "clusters", "inbound|9090|reviews"),
            ("reviews-v1", "listeners", "inbound|9090|reviews"),
            ("reviews-v2", "listeners", "inbound|9090|reviews"),
            ("ingress", "listeners", "gateway|21060|ingress"),
        }
    )
    # Both replicas serve the port from the same app port: one inbound cluster for both.
    assert built == Counter(
        {
            OUTBOUND_CLUSTER: 1,
            VIRTUAL_HOSTS: 2,  # as seen from its own namespace and from the other
            OUTBOUND_ROUTES: 2,  # one per namespace
            INBOUND_CLUSTER: 1,
            INBOUND_LISTENER: 2,
            GATEWAY_LISTENER: 1,
        }
    )


def test_a_workloads_endpoint_rebuilds_its_assignment_and_its_own_inbound_listener() -> None:
    changed, built = _rebuilt_by("port: 21021", "port: 21029")
    assert changed == _shared("endpoints", "outbound|50051||ratings.default") | {
        ("ratings-1", "listeners", "inbound|50051|ratings")
    }
    # ratings' workloads are derived again (BACKENDS: identities and endpoints, no
    # resource); its identities are the same, so its cluster stays.
    assert built == Counter({BACKENDS: 1, ENDPOINTS: 1, INBOUND_LISTENER: 1})


def test_the_mesh_mtls_mode_rebuilds_what_follows_it_and_not_a_service_with_its_own() -> None:
    changed, built = _rebuilt_by(
        "  trustDomain: example.org\n", "  trustDomain: example.org\n  mtls: DISABLE\n"
    )
    outbound = [
        "outbound|9080||productpage.default",
        "outbound|9080||reviews.default",
        "outbound|9090||reviews.default",
        "outbound|50051||ratings.default",
        "outbound|80||api.default",
        "outbound|9080||reviews.other",
    ]
    inbound = {
        ("productpage-1", "listeners", "inbound|9080|productpage"),
        ("reviews-v1", "listeners", "inbound|9080|reviews"),
        ("reviews-v1", "listeners", "inbound|9090|reviews"),
        ("reviews-v2", "listeners", "inbound|9080|reviews"),
        ("reviews-v2", "listeners", "inbound|9090|reviews"),
        ("ratings-1", "listeners", "inbound|50051|ratings"),
        ("api-1", "listeners", "inbound|80|api"),
        ("reviews-other", "listeners", "inbound|9080|reviews"),
    }
    # db says STRICT itself: its cluster and db-1's inbound listener stay.
    assert changed == set().union(*(_shared("clusters", name) for name in outbound)) | inbound
    assert built == Counter({OUTBOUND_CLUSTER: len(outbound), INBOUND_LISTENER: len(inbound)})


def test_a_services_own_mtls_mode_rebuilds_its_clusters_and_its_inbound_listeners() -> None:
    # The Service object is new, but its routes and endpoints are not built from its
    # mode: they stay.
    changed, built = _rebuilt_by(
        "  - name: ratings\n    ports: [{port: 50051, protocol: grpc}]\n",
        "  - name: ratings\n    mtls: DISABLE\n    ports: [{port: 50051, protocol: grpc}]\n",
    )
    assert changed == _shared("clusters", "outbound|50051||ratings.default") | {
        ("ratings-1", "listeners", "inbound|50051|ratings")
    }
    assert built == Counter({OUTBOUND_CLUSTER: 1, INBOUND_LISTENER: 1})


def test_a_gateways_routes_rebuild_its_listener_only() -> None:
    changed, built = _rebuilt_by("{prefix: /api/, service: api}", "{prefix: /v1/, service: api}")
    assert changed == {("ingress", "listeners", "gateway|21060|ingress")}
    assert built == Counter({GATEWAY_LISTENER: 1})


def test_a_workloads_upstreams_rebuild_its_upstream_listener_only() -> None:
    # The Workload object is new, so its service's workloads are derived again
    # (BACKENDS, no resource), to the same identities and endpoints: productpage's
    # cluster, assignment and inbound side stay.
    changed, built = _rebuilt_by(
        "{service: ratings, localPort: 21005}", "{service: ratings, localPort: 21008}"
    )
    assert changed == {
        ("productpage-1", "listeners", "upstream|21005|ratings.default"),
        ("productpage-1", "listeners", "upstream|21008|ratings.default"),
    }
    assert built == Counter({BACKENDS: 1, UPSTREAM_LISTENER: 1})


def test_the_memo_keeps_what_the_last_two_states_use_and_no_more() -> None:
    translator = Translator()
    state = parse_mesh_document(BASE, "mesh.yaml", 1)
    _translate_all(translator, state)
    one_state = translator.entries()
    for version in range(2, 12):
        edited = _edit(BASE, "{prefix: /api/,", f"{{prefix: /api{version}/,")
        state = parse_mesh_document(edited, "mesh.yaml", version).reuse_unchanged(state)
        _translate_all(translator, state)
        # This state's gateway listener and the one before: older ones were let go.
        assert translator.entries() == one_state + Counter({GATEWAY_LISTENER: 1})


def test_an_entry_the_last_state_did_not_use_is_rebuilt_when_needed_again() -> None:
    translator = Translator()
    first = parse_mesh_document(BASE, "mesh.yaml", 1)
    _translate_all(translator, first)
    edited = _edit(BASE, "{prefix: /api/,", "{prefix: /v1/,")
    second = parse_mesh_document(edited, "mesh.yaml", 2).reuse_unchanged(first)
    _translate_all(translator, second)
    built = translator.builds.copy()
    third = parse_mesh_document(BASE, "mesh.yaml", 3).reuse_unchanged(second)
    _translate_all(translator, third)
    assert translator.builds - built == Counter({GATEWAY_LISTENER: 1})


def test_proxies_of_one_namespace_share_one_view_per_state() -> None:
    translator = Translator()
    state = parse_mesh_document(BASE, "mesh.yaml", 1)
    first = translator.for_proxy(state, ProxyId("productpage-1", "default"))
    assert translator.for_proxy(state, ProxyId("ratings-1", "default")).shared is first.shared
    other = translator.for_proxy(state, ProxyId("reviews-other", "other"))
    assert other.shared is not first.shared  # short names differ in its route configuration
    assert (
        other[ResourceType.CLUSTER]["outbound|9080||reviews.default"]
        is (first[ResourceType.CLUSTER]["outbound|9080||reviews.default"])
    )


def test_the_identities_a_caller_accepts_are_the_states_identities_of_the_service(
    multi_service_state: MeshState,
) -> None:
    # The translator derives them from the workloads itself (a builder reads only its
    # key); they must not drift from the model's own answer.
    resources = Translator().for_proxy(multi_service_state, ProxyId("productpage-1", "default"))
    checked = set()
    for key in multi_service_state.services:
        for name, resource in resources[ResourceType.CLUSTER].items():
            if not name.startswith("outbound|") or not name.endswith(f"|{key}"):
                continue
            assert isinstance(resource.message, cluster_pb2.Cluster)
            context = tls_pb2.UpstreamTlsContext()
            resource.message.transport_socket.typed_config.Unpack(context)
            validation = context.common_tls_context.combined_validation_context
            sans = validation.default_validation_context.match_typed_subject_alt_names
            assert tuple(m.matcher.exact for m in sans) == multi_service_state.identities_of(key)
            checked.add(key)
    assert checked == set(multi_service_state.services)
