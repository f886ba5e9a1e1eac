"""Request authentication on the callee's side: a service's RequestAuthentications as
Envoy's ``jwt_authn`` filter, and the clusters its key sets are fetched through.

Owns: one JWT provider per rule (named ``<namespace>/<policy>/jwt-<i>``), the single
requirement of the filter (any provider's token; a missing token allowed only if no
policy says ``required``), the validated claims put in the request's metadata (for
AuthorizationPolicy ``when`` rules, under ``JWT_METADATA_KEY``) and the issuer and
subject in headers for the app, and the clusters of ``jwksUri`` hosts.
Must not: choose which policies apply (the translator does), or strip the headers a
caller sent (the connection manager does that, before any filter: see
``filters.early_removal``).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import http_uri_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from google.protobuf import empty_pb2

from sidemesh.envoy.protos import hosts_cluster, seconds
from sidemesh.envoy.tls import upstream_server_tls
from sidemesh.model.base import parse_duration
from sidemesh.model.policy.authentication import (
    ISSUER_HEADER,
    SUBJECT_HEADER,
    JwtRule,
    RequestAuthentication,
)

JWT_FILTER_NAME = "envoy.filters.http.jwt_authn"
JWT_METADATA_KEY = "payload"
"""Where a valid token's claims are, in the filter's dynamic metadata."""
JWT_CACHE_SIZE = 1000
"""Verified tokens each sidecar remembers (per worker thread)."""
CLOCK_SKEW_S = 30
"""Leeway for ``exp`` and ``nbf`` between the issuer's clock and the sidecar's."""


def jwt_authentication(
    policies: Sequence[RequestAuthentication],
) -> jwt_pb2.JwtAuthentication | None:
    if not policies:
        return None
    providers: dict[str, jwt_pb2.JwtProvider] = {}
    for policy in sorted(policies, key=lambda p: (p.metadata.namespace or "", p.metadata.name)):
        for i, rule in enumerate(policy.spec.jwt_rules):
            name = f"{policy.metadata.namespace}/{policy.metadata.name}/jwt-{i}"
            providers[name] = _provider(rule)
    anyone = [jwt_pb2.JwtRequirement(provider_name=name) for name in providers]
    if not any(p.spec.required for p in policies):
        # A request without a token goes on; one with a bad token is still refused.
        anyone.append(jwt_pb2.JwtRequirement(allow_missing=empty_pb2.Empty()))
    requirement = (
        anyone[0]
        if len(anyone) == 1
        else jwt_pb2.JwtRequirement(requires_any=jwt_pb2.JwtRequirementOrList(requirements=anyone))
    )
    return jwt_pb2.JwtAuthentication(
        providers=providers,
        rules=[
            jwt_pb2.RequirementRule(
                match=route_components_pb2.RouteMatch(prefix="/"), requires=requirement
            )
        ],
    )


def _provider(rule: JwtRule) -> jwt_pb2.JwtProvider:
    provider = jwt_pb2.JwtProvider(
        issuer=rule.issuer,
        audiences=list(rule.audiences),
        forward=rule.forward_original_token,
        payload_in_metadata=JWT_METADATA_KEY,
        # A token seen before skips its signature check (RS256 costs most of the
        # filter's time); its expiry is still checked every time.
        jwt_cache_config=jwt_pb2.JwtCacheConfig(jwt_cache_size=JWT_CACHE_SIZE),
        clock_skew_seconds=CLOCK_SKEW_S,
        claim_to_headers=[
            jwt_pb2.JwtClaimToHeader(header_name=ISSUER_HEADER, claim_name="iss"),
            jwt_pb2.JwtClaimToHeader(header_name=SUBJECT_HEADER, claim_name="sub"),
        ],
        from_headers=[
            jwt_pb2.JwtHeader(name=h.name, value_prefix=h.prefix or "") for h in rule.from_headers
        ],
    )
    if rule.jwks is not None:
        provider.local_jwks.inline_string = rule.jwks
    elif rule.jwks_file is not None:
        provider.local_jwks.filename = rule.jwks_file
    else:
        assert rule.jwks_uri is not None, "checked at load: one of the three"
        provider.remote_jwks.CopyFrom(
            jwt_pb2.RemoteJwks(
                http_uri=http_uri_pb2.HttpUri(
                    uri=rule.jwks_uri,
                    cluster=jwks_cluster_name(rule.jwks_uri),
                    timeout=seconds(parse_duration(rule.timeout)),
                ),
                cache_duration=seconds(parse_duration(rule.cache_duration)),
            )
        )
    return provider


def jwks_uris(policies: Sequence[RequestAuthentication]) -> tuple[str, ...]:
    return tuple(
        sorted({r.jwks_uri for p in policies for r in p.spec.jwt_rules if r.jwks_uri is not None})
    )


def jwks_cluster_name(uri: str) -> str:
    parts = urlsplit(uri)
    return f"jwks|{parts.scheme}|{parts.hostname}|{_port(uri)}"


def _port(uri: str) -> int:
    parts = urlsplit(uri)
    return parts.port or (443 if parts.scheme == "https" else 80)


def jwks_cluster(uri: str) -> cluster_pb2.Cluster:
    """The host of a ``jwksUri``; for https, over TLS checked against the system's
    CAs and for the host's name."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    cluster = hosts_cluster(jwks_cluster_name(uri), [host], _port(uri))
    if parts.scheme == "https":
        cluster.transport_socket.CopyFrom(upstream_server_tls(host))
    return cluster
