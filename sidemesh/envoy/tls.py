"""Mutual TLS between sidecars: transport sockets that take the workload certificate
and the trust bundle from the local agent over SDS (the control plane never holds
a private key), and check the peer's SPIFFE ID."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from sidemesh.envoy.protos import packed

SDS_CLUSTER = "sds-grpc"
"""The bootstrap cluster that reaches the agent's SDS server on a Unix socket."""
WORKLOAD_CERT_SECRET = "default"
"""SDS name of the workload's certificate chain and key."""
TRUST_BUNDLE_SECRET = "ROOTCA"
"""SDS name of the mesh's root certificates."""
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"


def _sds(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(
        name=name,
        sds_config=config_source_pb2.ConfigSource(
            api_config_source=config_source_pb2.ApiConfigSource(
                api_type=config_source_pb2.ApiConfigSource.GRPC,
                transport_api_version=config_source_pb2.ApiVersion.V3,
                grpc_services=[
                    grpc_service_pb2.GrpcService(
                        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=SDS_CLUSTER)
                    )
                ],
            ),
            resource_api_version=config_source_pb2.ApiVersion.V3,
        ),
    )


def _common(
    peer_matchers: Iterable[string_pb2.StringMatcher], alpn: Iterable[str]
) -> tls_pb2.CommonTlsContext:
    return tls_pb2.CommonTlsContext(
        tls_certificate_sds_secret_configs=[_sds(WORKLOAD_CERT_SECRET)],
        combined_validation_context=tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
            default_validation_context=common_pb2.CertificateValidationContext(
                match_typed_subject_alt_names=[
                    common_pb2.SubjectAltNameMatcher(
                        san_type=common_pb2.SubjectAltNameMatcher.URI, matcher=m
                    )
                    for m in peer_matchers
                ]
            ),
            validation_context_sds_secret_config=_sds(TRUST_BUNDLE_SECRET),
        ),
        alpn_protocols=list(alpn),
    )


def upstream_mtls(
    peer_identities: Iterable[str], sni: str, *, http2: bool
) -> base_pb2.TransportSocket:
    """Client side: present our certificate; accept only a peer whose SPIFFE ID is one
    of the identities that serve the service (not merely any mesh member)."""
    matchers = [string_pb2.StringMatcher(exact=uri) for uri in sorted(set(peer_identities))]
    context = tls_pb2.UpstreamTlsContext(
        common_tls_context=_common(matchers, ["h2"] if http2 else ["http/1.1"]),
        sni=sni,
    )
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=packed(context))


def downstream_mtls(trust_domain: str) -> base_pb2.TransportSocket:
    """Server side: require a client certificate from the mesh's trust domain."""
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=_common(
            [string_pb2.StringMatcher(prefix=f"spiffe://{trust_domain}/")], ["h2", "http/1.1"]
        ),
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
    )
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=packed(context))


def downstream_tls_from_files(certificate_file: str, key_file: str) -> base_pb2.TransportSocket:
    """Server side of the mesh's edge: a certificate and key from PEM files (a public
    one, not the mesh's), no client certificate asked for."""
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificates=[
                common_pb2.TlsCertificate(
                    certificate_chain=base_pb2.DataSource(filename=certificate_file),
                    private_key=base_pb2.DataSource(filename=key_file),
                )
            ],
            alpn_protocols=["h2", "http/1.1"],
        )
    )
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=packed(context))


SYSTEM_TRUST_STORE = "/etc/ssl/certs/ca-certificates.crt"
"""Debian's bundle of public CAs: whom TLS to a host outside the mesh trusts by default."""


def upstream_server_tls(server_name: str, ca_file: str | None = None) -> base_pb2.TransportSocket:
    """Client side, to a server outside the mesh: TLS with ``server_name`` as SNI, the
    server's certificate checked against ``ca_file`` (the system's CAs by default) and
    for that name."""
    context = tls_pb2.UpstreamTlsContext(
        sni=server_name,
        common_tls_context=tls_pb2.CommonTlsContext(
            validation_context=common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(filename=ca_file or SYSTEM_TRUST_STORE),
                match_typed_subject_alt_names=[
                    common_pb2.SubjectAltNameMatcher(
                        san_type=common_pb2.SubjectAltNameMatcher.DNS,
                        matcher=string_pb2.StringMatcher(exact=server_name),
                    )
                ],
            )
        ),
    )
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=packed(context))
