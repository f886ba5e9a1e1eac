"""The HTTP filter chain: one order, assembled in one place, for every connection
manager translation makes."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_authn_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from sidemesh.envoy import ProxyId, ProxyResources, Resource, ResourceType, Translator
from sidemesh.envoy.filters import (
    FAULT_FILTER,
    FORWARD_PROXY_FILTER,
    HCM_FILTER,
    JWT_AUTHN_FILTER,
    LOCAL_RATELIMIT_FILTER,
    RBAC_FILTER,
    ROUTER_FILTER,
    ROUTER_ONLY,
    HttpFilters,
    http_filters,
)
from sidemesh.envoy.inbound import inbound_cluster, inbound_listener
from sidemesh.envoy.outbound.egress import forward_proxy_filter
from sidemesh.model import MeshState, MtlsMode, ServiceKey, ServicePort
from tests.helpers.envoy_validate import inline_bootstrap, validate

EVERY_FILTER = HttpFilters(
    jwt_authn=jwt_authn_pb2.JwtAuthentication(),
    rbac=(rbac_pb2.RBAC(),),
    local_ratelimit=local_rate_limit_pb2.LocalRateLimit(stat_prefix="inbound_ratelimit"),
    fault=fault_pb2.HTTPFault(),
    dynamic_forward_proxy=forward_proxy_filter(),
)


def _connection_managers(listener: listener_pb2.Listener) -> list[hcm_pb2.HttpConnectionManager]:
    out = []
    for chain in listener.filter_chains:
        for flt in chain.filters:
            if flt.name == HCM_FILTER:
                hcm = hcm_pb2.HttpConnectionManager()
                flt.typed_config.Unpack(hcm)
                out.append(hcm)
    return out


def test_the_chain_is_jwt_then_rbac_then_rate_limit_then_fault_then_forward_proxy_then_router() -> (
    None
):
    assert [f.name for f in http_filters(EVERY_FILTER)] == [
        JWT_AUTHN_FILTER,
        RBAC_FILTER,
        LOCAL_RATELIMIT_FILTER,
        FAULT_FILTER,
        FORWARD_PROXY_FILTER,
        ROUTER_FILTER,
    ]
    only_some = HttpFilters(fault=fault_pb2.HTTPFault(), rbac=(rbac_pb2.RBAC(),))
    assert [f.name for f in http_filters(only_some)] == [RBAC_FILTER, FAULT_FILTER, ROUTER_FILTER]
    assert [f.name for f in http_filters(ROUTER_ONLY)] == [ROUTER_FILTER]


def test_every_connection_manager_translation_makes_has_the_assembled_chain(
    multi_service_state: MeshState,
) -> None:
    translator = Translator()
    seen = 0
    for name, namespace in [*multi_service_state.workloads, *multi_service_state.gateways]:
        resources = translator.for_proxy(multi_service_state, ProxyId(name, namespace))
        for resource in resources[ResourceType.LISTENER].values():
            assert isinstance(resource.message, listener_pb2.Listener)
            # The app's outbound listener resolves hosts outside the mesh (ALLOW_ANY).
            outbound = resource.name.startswith("outbound|")
            expected = http_filters(
                HttpFilters(dynamic_forward_proxy=forward_proxy_filter())
                if outbound
                else ROUTER_ONLY
            )
            for hcm in _connection_managers(resource.message):
                assert list(hcm.http_filters) == expected
                seen += 1
    assert seen > 0


def test_a_chain_of_every_filter_passes_envoy_validate(tmp_path: Path) -> None:
    key, port = ServiceKey("reviews", "default"), ServicePort(port=9080)
    cluster = inbound_cluster(key, port, 22002)
    listener = inbound_listener(
        "inbound|9080|reviews",
        "127.0.0.1",
        22001,
        cluster.name,
        http=True,
        mtls=MtlsMode.PERMISSIVE,
        trust_domain="example.org",
        filters=EVERY_FILTER,
    )
    resources = ProxyResources(
        {
            ResourceType.CLUSTER: MappingProxyType(
                {cluster.name: Resource.of(ResourceType.CLUSTER, cluster.name, cluster)}
            ),
            ResourceType.LISTENER: MappingProxyType(
                {listener.name: Resource.of(ResourceType.LISTENER, listener.name, listener)}
            ),
        }
    )
    validate(inline_bootstrap(resources), tmp_path)
