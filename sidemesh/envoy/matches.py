"""Gateway API route matches → Envoy route matches, for either side: the caller's
routes and the callee's rate-limited routes match requests alike."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from sidemesh.model.policy.routes import (
    HeaderMatch,
    HTTPRouteMatch,
    PathMatchType,
    StringMatchType,
)


def route_match(match: HTTPRouteMatch) -> route_components_pb2.RouteMatch:
    path = match.effective_path
    out = route_components_pb2.RouteMatch()
    if path.type is PathMatchType.EXACT:
        out.path = path.value
    elif path.type is PathMatchType.REGULAR_EXPRESSION:
        out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=path.value))
    elif path.value.rstrip("/") == "":
        out.prefix = "/"
    else:
        # Segment semantics: /v2 matches /v2 and /v2/x, never /v2example.
        out.path_separated_prefix = path.value.rstrip("/")
    out.headers.extend(header_matcher(h) for h in match.headers)
    if match.method:
        out.headers.append(
            route_components_pb2.HeaderMatcher(
                name=":method", string_match=string_pb2.StringMatcher(exact=match.method)
            )
        )
    for param in match.query_params:
        out.query_parameters.append(
            route_components_pb2.QueryParameterMatcher(
                name=param.name, string_match=_string(param.type, param.value)
            )
        )
    return out


def header_matcher(header: HeaderMatch) -> route_components_pb2.HeaderMatcher:
    return route_components_pb2.HeaderMatcher(
        name=header.name.lower(), string_match=_string(header.type, header.value)
    )


def _string(kind: StringMatchType, value: str) -> string_pb2.StringMatcher:
    if kind is StringMatchType.REGULAR_EXPRESSION:
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value))
    return string_pb2.StringMatcher(exact=value)
