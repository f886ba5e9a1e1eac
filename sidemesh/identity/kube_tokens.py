"""Kubernetes service-account tokens as proof of a pod's identity: the CA asks the
API server (a ``TokenReview``) whether the token is genuine, unexpired and meant for
sidemesh, and takes the pod and its service account from the answer.

The agent sends the projected token the kubelet wrote for its pod (audience
``sidemesh``, bound to the pod). A token the API server does not vouch for, one for
another audience, one not bound to a pod, or one whose service account is not the one
its pod runs as, is refused. The token itself is never logged."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sidemesh.errors import SidemeshError
from sidemesh.identity.tokens import InvalidToken
from sidemesh.model.refs import WorkloadRef

TOKEN_AUDIENCE = "sidemesh"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"

ReviewCall = Callable[[Mapping[str, Any]], Awaitable[Mapping[str, Any]]]
"""POSTs a TokenReview to the API server and returns its answer (the control plane
gives its Kubernetes client's)."""
ServiceAccountOf = Callable[[WorkloadRef], str | None]
"""The service account a pod runs as in the current mesh state (None: not in it)."""


class TokenReviewValidator:
    def __init__(
        self,
        review: ReviewCall,
        service_account_of: ServiceAccountOf,
        audience: str = TOKEN_AUDIENCE,
    ) -> None:
        self.review = review
        self.service_account_of = service_account_of
        self.audience = audience

    async def validate(self, token: str) -> WorkloadRef:
        if not token:
            raise InvalidToken("no service-account token")
        request = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [self.audience]},
        }
        try:
            answer = await self.review(request)
        except (SidemeshError, OSError, TimeoutError) as exc:
            raise InvalidToken(f"the Kubernetes API could not review the token: {exc}") from exc
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            why = status.get("error") or "not authenticated"
            raise InvalidToken(f"the Kubernetes API refused the token: {why}")
        if self.audience not in (status.get("audiences") or []):
            raise InvalidToken(f"the token is not meant for audience {self.audience!r}")
        user = status.get("user") or {}
        username = str(user.get("username") or "")
        namespace, _, account = username.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")
        if not username.startswith(SERVICE_ACCOUNT_PREFIX) or not namespace or not account:
            raise InvalidToken(f"the token is {username!r}'s, not a service account's")
        pods = (user.get("extra") or {}).get(POD_NAME_EXTRA) or []
        if not pods:
            raise InvalidToken(
                f"the token of service account {namespace}/{account} is not bound to a pod: "
                f"mount a projected token with audience {self.audience!r}"
            )
        workload = WorkloadRef(str(pods[0]), namespace)
        runs_as = self.service_account_of(workload)
        if runs_as is not None and runs_as != account:
            raise InvalidToken(
                f"the token is service account {namespace}/{account}'s, "
                f"but pod {workload} runs as {namespace}/{runs_as}"
            )
        return workload
