"""The filters a listener's filter chain is made of, and the one place that assembles
an HTTP filter chain.

Owns: the HTTP connection manager and TCP proxy network filters every listener uses,
``HttpFilters`` (the optional HTTP filters of one chain, as Envoy config) and
``http_filters``, which puts them in the one order below. Every HTTP connection
manager gets its ``http_filters`` from here, so the order is stated once.
Must not: decide which filters a side or a proxy gets (the side's builders and the
translator do, from the model), read the model, or know resource names beyond the
stat prefix it is handed.

The order, and why:

1. ``jwt_authn``: authenticates the request first, and writes the verified claims
   into the request's metadata, where every later filter (``rbac`` above all) can
   match on them; a request with a bad token stops here with 401.
2. ``rbac``: who may call what, deciding on the peer's verified SPIFFE ID and the
   claims ``jwt_authn`` left; a denied request stops with 403.
3. ``local_ratelimit``: counts only requests the service would serve, so callers that
   are refused above never spend the tokens of those that are allowed (a flood of
   unauthorized requests cannot rate-limit the authorized ones out).
4. ``on_demand``: on a caller's outbound chain, a request whose Host the sidecar
   holds no virtual host for waits here while the virtual host is fetched (VHDS, see
   ``outbound.demand``); it comes before every filter that reads the route (``fault``
   its per-route settings, ``dynamic_forward_proxy`` its cluster), which would
   otherwise see none.
5. ``fault``: an injected delay or abort stands for the upstream failing, so it applies
   only to requests every check above let through, as a real failure of the upstream
   would; a request refused above is refused at once, not also delayed.
6. ``dynamic_forward_proxy``: resolves the host of a call leaving the mesh (ALLOW_ANY),
   last before the router, so a request refused or failed above never costs a DNS
   lookup; it does nothing for requests routed to mesh services.
7. ``router``: Envoy requires the terminal filter last; it sends the request on.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import extension_pb2 as core_extension_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.filters.http.dynamic_forward_proxy.v3 import (
    dynamic_forward_proxy_pb2 as dfp_filter_pb2,
)
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_authn_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.on_demand.v3 import on_demand_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import (
    header_mutation_pb2,
)
from google.protobuf import wrappers_pb2
from google.protobuf.message import Message
from google.protobuf.wrappers_pb2 import BoolValue

from sidemesh.envoy.observability import ProxyTelemetry, access_log, http_tracing
from sidemesh.envoy.protos import ads_config_source, packed
from sidemesh.model.policy.authentication import ISSUER_HEADER, SUBJECT_HEADER

HCM_FILTER = "envoy.filters.network.http_connection_manager"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
JWT_AUTHN_FILTER = "envoy.filters.http.jwt_authn"
RBAC_FILTER = "envoy.filters.http.rbac"
LOCAL_RATELIMIT_FILTER = "envoy.filters.http.local_ratelimit"
ON_DEMAND_FILTER = "envoy.filters.http.on_demand"
FAULT_FILTER = "envoy.filters.http.fault"
FORWARD_PROXY_FILTER = "envoy.filters.http.dynamic_forward_proxy"
ROUTER_FILTER = "envoy.filters.http.router"
ORIGINAL_DST_FILTER = "envoy.filters.listener.original_dst"
"""A listener filter: a redirected connection's destination, as the app dialled it."""


@dataclass(frozen=True)
class HttpFilters:
    """The optional filters of one HTTP filter chain, each as its Envoy config; None
    leaves the filter out. The router is not optional: every chain ends with it.

    Which side sets what (as the work that adds each one will): a callee's inbound
    chain ``jwt_authn``, ``rbac`` and ``local_ratelimit`` (the callee enforces who may
    call it and how often, whatever the caller's sidecar did); a caller's outbound chain
    ``on_demand`` (where it learns services as its app calls them), ``fault`` (faults
    stand for the upstream, as seen by one caller) and
    ``dynamic_forward_proxy`` (where the mesh lets calls out to any host); the gateway,
    the mesh's edge, ``jwt_authn``, ``rbac`` and ``local_ratelimit``. Per-route settings
    go in the routes (``typed_per_filter_config``), not here."""

    jwt_authn: jwt_authn_pb2.JwtAuthentication | None = None
    rbac: tuple[rbac_pb2.RBAC, ...] = ()
    """In the order they run (``inbound.authorization`` says which and why)."""
    local_ratelimit: local_rate_limit_pb2.LocalRateLimit | None = None
    on_demand: on_demand_pb2.OnDemand | None = None
    fault: fault_pb2.HTTPFault | None = None
    dynamic_forward_proxy: dfp_filter_pb2.FilterConfig | None = None


ROUTER_ONLY = HttpFilters()
"""A chain of the router alone: what every side has until policies add filters."""


def http_filters(filters: HttpFilters) -> list[hcm_pb2.HttpFilter]:
    """The chain, in the order the module docstring gives and explains."""
    optional: list[tuple[str, Message | None]] = [
        (JWT_AUTHN_FILTER, filters.jwt_authn),
        *((RBAC_FILTER, rbac) for rbac in filters.rbac),
        (LOCAL_RATELIMIT_FILTER, filters.local_ratelimit),
        (ON_DEMAND_FILTER, filters.on_demand),
        (FAULT_FILTER, filters.fault),
        (FORWARD_PROXY_FILTER, filters.dynamic_forward_proxy),
    ]
    chain = [
        hcm_pb2.HttpFilter(name=name, typed_config=packed(config))
        for name, config in optional
        if config is not None
    ]
    chain.append(hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=packed(router_pb2.Router())))
    return chain


def http_connection_manager(
    stat_prefix: str,
    filters: HttpFilters,
    *,
    rds_name: str | None = None,
    route_config: route_pb2.RouteConfiguration | None = None,
    inbound: bool = False,
    edge: bool = False,
    telemetry: ProxyTelemetry | None = None,
) -> listener_components_pb2.Filter:
    """An HTTP connection manager whose routes come over RDS (``rds_name``) or inline
    (``route_config``). ``inbound``: it faces a calling sidecar; ``edge``: it faces
    callers outside the mesh; ``telemetry``: how it makes spans and which requests it
    logs (none: no spans, failed requests logged)."""
    hcm = hcm_pb2.HttpConnectionManager(
        # At the mesh's edge the peer's address is the client's; inside, it is a sidecar.
        use_remote_address=BoolValue(value=edge),
        stat_prefix=stat_prefix,
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        # Outbound: drop any x-forwarded-client-cert the app sent. Inbound: replace it
        # with the peer's verified SPIFFE ID, so the app can trust what it reads.
        forward_client_cert_details=(
            hcm_pb2.HttpConnectionManager.SANITIZE_SET
            if inbound
            else hcm_pb2.HttpConnectionManager.SANITIZE
        ),
        set_current_client_cert_details=(
            hcm_pb2.HttpConnectionManager.SetCurrentClientCertDetails(uri=True) if inbound else None
        ),
        http_filters=http_filters(filters),
    )
    hcm.early_header_mutation_extensions.append(_strip_mesh_owned_headers())
    if filters.jwt_authn is not None:
        hcm.local_reply_config.CopyFrom(_every_token_failure_is_401())
    if inbound or edge:
        _path_safety(hcm)
    every_request = telemetry is not None and telemetry.log_every_request
    hcm.access_log.append(access_log(stat_prefix, every_request=every_request))
    if telemetry is not None:
        hcm.tracing.CopyFrom(http_tracing(telemetry))
    if rds_name is not None:
        hcm.rds.CopyFrom(hcm_pb2.Rds(config_source=ads_config_source(), route_config_name=rds_name))
    elif route_config is not None:
        hcm.route_config.CopyFrom(route_config)
    return listener_components_pb2.Filter(name=HCM_FILTER, typed_config=packed(hcm))


MESH_OWNED_HEADERS = (ISSUER_HEADER, SUBJECT_HEADER)
"""Headers only the mesh may set: what a sidecar tells the app it verified."""
ENVOY_INTERNAL_HEADERS = tuple(
    f"x-envoy-{name}"
    for name in (
        "original-path",
        "original-url",
        "original-dst-host",
        "decorator-operation",
        "downstream-service-cluster",
        "downstream-service-node",
        "peer-metadata",
        "peer-metadata-id",
        "internal",
        "external-address",
    )
)
"""Envoy's headers that say where a request came from or how it was routed: a caller
that sets them could make a proxy or an app believe them."""


def _strip_mesh_owned_headers() -> core_extension_pb2.TypedExtensionConfig:
    """Removes, before any filter runs, every copy a caller sent of the headers the mesh
    owns: so what the app reads in them was set by its own sidecar."""
    mutation = header_mutation_pb2.HeaderMutation(
        mutations=[
            mutation_rules_pb2.HeaderMutation(remove=name)
            for name in (*MESH_OWNED_HEADERS, *ENVOY_INTERNAL_HEADERS)
        ]
    )
    return core_extension_pb2.TypedExtensionConfig(
        name="sidemesh.strip_mesh_owned_headers", typed_config=packed(mutation)
    )


def _every_token_failure_is_401() -> hcm_pb2.LocalReplyConfig:
    """Envoy answers a valid token for another audience with 403 and every other token
    failure with 401; a caller told 403 would look for an authorization policy, where
    the fault is its token: every refusal of ``jwt_authn`` becomes 401."""
    refused_token = accesslog_pb2.AccessLogFilter(
        extension_filter=accesslog_pb2.ExtensionFilter(
            name="envoy.access_loggers.extension_filters.cel",
            typed_config=packed(
                cel_pb2.ExpressionFilter(
                    expression="response.code_details.startsWith('jwt_authn_access_denied')"
                )
            ),
        )
    )
    return hcm_pb2.LocalReplyConfig(
        mappers=[
            hcm_pb2.ResponseMapper(
                filter=refused_token, status_code=wrappers_pb2.UInt32Value(value=401)
            )
        ]
    )


def _path_safety(hcm: hcm_pb2.HttpConnectionManager) -> None:
    """Where requests enter a workload or the mesh, every path is made canonical
    before any filter or route looks at it, so a policy on ``/admin`` sees ``/admin``
    however it was spelled: RFC 3986 normalization (``/./``, ``/../``, percent-encoded
    unreserved characters decoded), repeated slashes merged; an encoded slash or
    backslash (``%2F``, ``%5C``), whose meaning differs between servers, is refused
    with 400 rather than guessed at; so is a header whose name has an underscore (a
    proxy may read ``x_user`` as ``x-user``)."""
    hcm.normalize_path.value = True
    hcm.merge_slashes = True
    hcm.path_with_escaped_slashes_action = (
        hcm_pb2.HttpConnectionManager.PathWithEscapedSlashesAction.REJECT_REQUEST
    )
    hcm.common_http_protocol_options.headers_with_underscores_action = (
        protocol_pb2.HttpProtocolOptions.REJECT_REQUEST
    )


EARLY_DATA_BYTES = 64 * 1024


def tcp_proxy(
    stat_prefix: str, cluster: str, *, after_tls_handshake: bool = False
) -> listener_components_pb2.Filter:
    """A TCP proxy to one cluster: for ports whose protocol is not HTTP.
    ``after_tls_handshake``: connect to the upstream only once the client's TLS
    handshake has succeeded, so a client without a mesh certificate never causes even
    a connection to the app."""
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix, cluster=cluster)
    if after_tls_handshake:
        proxy.upstream_connect_mode = tcp_proxy_pb2.ON_DOWNSTREAM_TLS_HANDSHAKE
        # Bytes the client sends before the upstream is connected are buffered, up to
        # this much (Envoy requires a bound when it waits).
        proxy.max_early_data_bytes.value = EARLY_DATA_BYTES
    return listener_components_pb2.Filter(name=TCP_PROXY_FILTER, typed_config=packed(proxy))
