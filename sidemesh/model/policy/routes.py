"""Gateway API routes, ``gateway.networking.k8s.io/v1``: ``HTTPRoute`` and ``GRPCRoute``,
with the v1 field names, defaults and enums, so a route written for Kubernetes (GAMMA:
``parentRefs`` to a Service) loads here unchanged."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from sidemesh.model.base import Duration, Model, PortNumber
from sidemesh.model.policy.common import BackendRef, ObjectMeta, ParentRef

HeaderName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$", max_length=256)
]


class PathMatchType(StrEnum):
    EXACT = "Exact"
    PATH_PREFIX = "PathPrefix"
    REGULAR_EXPRESSION = "RegularExpression"


class StringMatchType(StrEnum):
    EXACT = "Exact"
    REGULAR_EXPRESSION = "RegularExpression"


class PathMatch(Model):
    type: PathMatchType = PathMatchType.PATH_PREFIX
    value: Annotated[str, StringConstraints(max_length=1024)] = "/"

    @model_validator(mode="after")
    def _absolute(self) -> PathMatch:
        if self.type is not PathMatchType.REGULAR_EXPRESSION and not self.value.startswith("/"):
            raise ValueError(f"path {self.value!r} must start with '/'")
        return self


class HeaderMatch(Model):
    type: StringMatchType = StringMatchType.EXACT
    name: HeaderName
    value: Annotated[str, StringConstraints(max_length=4096)]


class QueryParamMatch(Model):
    type: StringMatchType = StringMatchType.EXACT
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    value: Annotated[str, StringConstraints(max_length=1024)]


HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


class HTTPRouteMatch(Model):
    path: PathMatch | None = None
    """Left out: ``PathPrefix /``, as the Gateway API defaults it."""
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryParamMatch, ...] = ()
    method: HttpMethod | None = None

    @property
    def effective_path(self) -> PathMatch:
        return self.path or PathMatch()


class HTTPHeader(Model):
    name: HeaderName
    value: Annotated[str, StringConstraints(max_length=4096)]


class HeaderModifier(Model):
    set: tuple[HTTPHeader, ...] = ()
    add: tuple[HTTPHeader, ...] = ()
    remove: tuple[HeaderName, ...] = ()


class PathModifierType(StrEnum):
    REPLACE_FULL_PATH = "ReplaceFullPath"
    REPLACE_PREFIX_MATCH = "ReplacePrefixMatch"


class PathModifier(Model):
    type: PathModifierType
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None

    @model_validator(mode="after")
    def _one_value(self) -> PathModifier:
        wanted = (
            "replaceFullPath"
            if self.type is PathModifierType.REPLACE_FULL_PATH
            else "replacePrefixMatch"
        )
        value = (
            self.replace_full_path
            if self.type is PathModifierType.REPLACE_FULL_PATH
            else self.replace_prefix_match
        )
        if value is None:
            raise ValueError(f"type {self.type.value} needs {wanted}")
        if not value.startswith("/"):
            raise ValueError(f"{wanted} {value!r} must start with '/'")
        return self


class RequestRedirect(Model):
    scheme: Literal["http", "https"] | None = None
    hostname: str | None = None
    path: PathModifier | None = None
    port: PortNumber | None = None
    status_code: Literal[301, 302, 303, 307, 308] = 302


class URLRewrite(Model):
    hostname: str | None = None
    path: PathModifier | None = None


class Fraction(Model):
    numerator: int = Field(ge=0)
    denominator: int = Field(default=100, ge=1)


class RequestMirror(Model):
    backend_ref: BackendRef
    percent: int | None = Field(default=None, ge=0, le=100)
    fraction: Fraction | None = None

    @property
    def share(self) -> float:
        """The fraction of requests mirrored, 0..1 (all of them unless told)."""
        if self.percent is not None:
            return self.percent / 100
        if self.fraction is not None:
            return self.fraction.numerator / self.fraction.denominator
        return 1.0


class LocalObjectReference(Model):
    group: str
    kind: str
    name: str


class FilterType(StrEnum):
    REQUEST_HEADER_MODIFIER = "RequestHeaderModifier"
    RESPONSE_HEADER_MODIFIER = "ResponseHeaderModifier"
    REQUEST_MIRROR = "RequestMirror"
    REQUEST_REDIRECT = "RequestRedirect"
    URL_REWRITE = "URLRewrite"
    EXTENSION_REF = "ExtensionRef"


_FILTER_FIELDS = {
    FilterType.REQUEST_HEADER_MODIFIER: "request_header_modifier",
    FilterType.RESPONSE_HEADER_MODIFIER: "response_header_modifier",
    FilterType.REQUEST_MIRROR: "request_mirror",
    FilterType.REQUEST_REDIRECT: "request_redirect",
    FilterType.URL_REWRITE: "url_rewrite",
    FilterType.EXTENSION_REF: "extension_ref",
}


class HTTPRouteFilter(Model):
    """One filter: ``type`` names which of the other fields it sets (and only that one)."""

    type: FilterType
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_mirror: RequestMirror | None = None
    request_redirect: RequestRedirect | None = None
    url_rewrite: URLRewrite | None = None
    extension_ref: LocalObjectReference | None = None

    @model_validator(mode="after")
    def _matches_type(self) -> HTTPRouteFilter:
        wanted = _FILTER_FIELDS[self.type]
        given = [f for f in _FILTER_FIELDS.values() if getattr(self, f) is not None]
        camel = "".join(p if i == 0 else p.title() for i, p in enumerate(wanted.split("_")))
        if given != [wanted]:
            raise ValueError(f"a filter of type {self.type.value} sets {camel} and nothing else")
        return self


class HTTPBackendRef(BackendRef):
    filters: tuple[HTTPRouteFilter, ...] = ()


class HTTPRouteTimeouts(Model):
    request: Duration | None = None
    """The whole request, retries included; ``0s`` turns the timeout off."""
    backend_request: Duration | None = None
    """Each try (the per-try timeout of a retry); at most ``request``."""


class HTTPRouteRetry(Model):
    codes: tuple[Annotated[int, Field(ge=400, le=599)], ...] = ()
    attempts: int | None = Field(default=None, ge=0, le=10)
    backoff: Duration | None = None


class HTTPRouteRule(Model):
    name: str | None = None
    matches: tuple[HTTPRouteMatch, ...] = ()
    """Left out: one match of ``PathPrefix /`` (every request)."""
    filters: tuple[HTTPRouteFilter, ...] = ()
    backend_refs: tuple[HTTPBackendRef, ...] = ()
    timeouts: HTTPRouteTimeouts | None = None
    retry: HTTPRouteRetry | None = None

    @property
    def effective_matches(self) -> tuple[HTTPRouteMatch, ...]:
        return self.matches or (HTTPRouteMatch(),)


class HTTPRouteSpec(Model):
    parent_refs: tuple[ParentRef, ...] = Field(min_length=1)
    hostnames: tuple[str, ...] = ()
    rules: tuple[HTTPRouteRule, ...] = Field(default=(HTTPRouteRule(),), min_length=1)


class HTTPRoute(Model):
    api_version: Literal["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"]
    kind: Literal["HTTPRoute"]
    metadata: ObjectMeta
    spec: HTTPRouteSpec


# --- gRPC ---------------------------------------------------------------------------


class GRPCMethodMatch(Model):
    type: StringMatchType = StringMatchType.EXACT
    service: str | None = None
    """The fully qualified service, ``helloworld.Greeter``."""
    method: str | None = None

    @model_validator(mode="after")
    def _something(self) -> GRPCMethodMatch:
        if self.service is None and self.method is None:
            raise ValueError("a method match names a service, a method, or both")
        return self


class GRPCRouteMatch(Model):
    method: GRPCMethodMatch | None = None
    headers: tuple[HeaderMatch, ...] = ()


class GRPCRouteFilter(HTTPRouteFilter):
    @model_validator(mode="after")
    def _grpc_types(self) -> GRPCRouteFilter:
        if self.type in (FilterType.REQUEST_REDIRECT, FilterType.URL_REWRITE):
            raise ValueError(f"a GRPCRoute has no {self.type.value} filter")
        return self


class GRPCBackendRef(BackendRef):
    filters: tuple[GRPCRouteFilter, ...] = ()


class GRPCRouteRule(Model):
    name: str | None = None
    matches: tuple[GRPCRouteMatch, ...] = ()
    filters: tuple[GRPCRouteFilter, ...] = ()
    backend_refs: tuple[GRPCBackendRef, ...] = ()


class GRPCRouteSpec(Model):
    parent_refs: tuple[ParentRef, ...] = Field(min_length=1)
    hostnames: tuple[str, ...] = ()
    rules: tuple[GRPCRouteRule, ...] = Field(default=(GRPCRouteRule(),), min_length=1)


class GRPCRoute(Model):
    api_version: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["GRPCRoute"]
    metadata: ObjectMeta
    spec: GRPCRouteSpec
