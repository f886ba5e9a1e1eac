"""``RequestAuthentication`` (``sidemesh.io/v1alpha1``): the JSON Web Tokens a service
accepts, checked by its sidecar before any authorization.

A request with a token that fails any check (signature, issuer, audience, expiry, not
yet valid, ``alg: none``, an unknown key) is refused with 401, whatever ``required``
says; ``required`` (the default) also refuses a request without a token. A valid
token's claims are usable in AuthorizationPolicy ``when`` conditions
(``request.auth.claims[group]``) and its ``<iss>/<sub>`` in ``requestPrincipals``; its
issuer and subject reach the app in ``x-sidemesh-jwt-issuer`` and
``x-sidemesh-jwt-subject`` (any copy a caller sent is removed first). The key set is
inline (``jwks``), a file (``jwksFile``) or a URI (``jwksUri``) the sidecar fetches
and caches; when it cannot be fetched, tokens cannot be checked and are refused (fail
closed)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sidemesh.model.base import Duration, Model
from sidemesh.model.policy.common import ObjectMeta, TargetRef

ISSUER_HEADER = "x-sidemesh-jwt-issuer"
SUBJECT_HEADER = "x-sidemesh-jwt-subject"


class TokenHeader(Model):
    name: str = Field(min_length=1)
    prefix: str | None = None
    """What precedes the token in the header's value (``Bearer ``)."""


class JwtRule(Model):
    issuer: str = Field(min_length=1)
    audiences: tuple[str, ...] = ()
    """Any of these in the token's ``aud``; left out, the audience is not checked."""
    jwks: str | None = None
    """The JSON Web Key Set itself, as JSON text."""
    jwks_file: str | None = None
    """An absolute path to it (every sidecar of the service reads it)."""
    jwks_uri: str | None = None
    """``http://`` or ``https://`` URL the sidecar fetches it from (and caches)."""
    timeout: Duration = "5s"
    """How long a fetch of ``jwksUri`` may take."""
    cache_duration: Duration = "5m"
    from_headers: tuple[TokenHeader, ...] = ()
    """Where the token is; left out, ``Authorization: Bearer <token>``."""
    forward_original_token: bool = False
    """Pass the token on to the app (it is removed by default)."""

    @model_validator(mode="after")
    def _one_key_set(self) -> JwtRule:
        given = [x for x in (self.jwks, self.jwks_file, self.jwks_uri) if x is not None]
        if len(given) != 1:
            raise ValueError("a jwtRule takes exactly one of jwks, jwksFile or jwksUri")
        if self.jwks_file is not None and not self.jwks_file.startswith("/"):
            raise ValueError(f"jwksFile {self.jwks_file!r} must be an absolute path")
        if self.jwks_uri is not None and not self.jwks_uri.startswith(("http://", "https://")):
            raise ValueError(f"jwksUri {self.jwks_uri!r} must be an http:// or https:// URL")
        return self


class RequestAuthenticationSpec(Model):
    target_refs: tuple[TargetRef, ...] = ()
    """Services it applies to; left out, every service of its namespace."""
    jwt_rules: tuple[JwtRule, ...] = Field(min_length=1)
    required: bool = True
    """Refuse (401) a request that carries no token. ``false``: such a request goes on
    unauthenticated (an AuthorizationPolicy may still require ``requestPrincipals``)."""


class RequestAuthentication(Model):
    api_version: Literal["sidemesh.io/v1alpha1"]
    kind: Literal["RequestAuthentication"]
    metadata: ObjectMeta
    spec: RequestAuthenticationSpec
