"""The mutating admission webhook: the API server sends an ``AdmissionReview`` (v1) for
each pod being created in a namespace the webhook configuration selects; the answer
allows it, with the JSONPatch that adds the sidecar when the pod should have one.

It answers from the review alone (no call back to the API server), so it is fast and
cannot hang pod creation; a review it cannot read is refused with a reason (400), and
the webhook configuration's ``failurePolicy`` decides what the API server does then."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from sidemesh.kube.inject import InjectConfig, decide, patch

log = logging.getLogger(__name__)

INJECT_PATH = "/inject"
VALIDATE_PATH = "/validate"

PolicyCheck = Callable[[Mapping[str, Any]], list[str]]
"""What the mesh finds wrong with a policy object if it were applied now (empty: fine)."""


def webhook_app(config: InjectConfig, check: PolicyCheck | None = None) -> FastAPI:
    """Injection; and, given ``check``, validation of policy objects for what their
    CRD schema cannot say (cross-references to services, routes, filters)."""
    app = FastAPI(title="sidemesh admission webhooks", version="1")

    if check is not None:
        policy_check = check

        @app.post(
            VALIDATE_PATH, summary="AdmissionReview v1 of a policy object: allowed or why not"
        )
        async def validate(request: Request) -> dict[str, Any]:
            try:
                review = await request.json()
            except ValueError as exc:
                raise HTTPException(400, f"not JSON: {exc}") from exc
            return validation_answer(review, policy_check)

    @app.post(INJECT_PATH, summary="AdmissionReview v1 of a pod: allowed, with the sidecar")
    async def inject(request: Request) -> dict[str, Any]:
        try:
            review = await request.json()
        except ValueError as exc:
            raise HTTPException(400, f"not JSON: {exc}") from exc
        return answer(review, config)

    @app.get("/healthz", summary="The webhook is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _request_of(review: Any) -> dict[str, Any]:
    if not isinstance(review, dict) or review.get("kind") != "AdmissionReview":
        raise HTTPException(400, "expected an AdmissionReview (admission.k8s.io/v1)")
    request = review.get("request")
    if not isinstance(request, dict) or not request.get("uid"):
        raise HTTPException(400, "the AdmissionReview has no request.uid")
    return request


def validation_answer(review: Any, check: PolicyCheck) -> dict[str, Any]:
    """Allowed, or refused with every problem the mesh finds (field path and reason)."""
    request = _request_of(review)
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    obj = request.get("object")
    if request.get("operation") in ("CREATE", "UPDATE") and isinstance(obj, dict):
        problems = check(obj)
        if problems:
            response["allowed"] = False
            response["status"] = {
                "code": 422,
                "reason": "Invalid",
                "message": "sidemesh refuses it: " + "; ".join(problems),
            }
    return {
        "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
        "kind": "AdmissionReview",
        "response": response,
    }


def answer(review: Any, config: InjectConfig) -> dict[str, Any]:
    """The ``AdmissionReview`` sent back for ``review``."""
    request = _request_of(review)
    response: dict[str, Any] = {"uid": request["uid"], "allowed": True}
    pod = request.get("object")
    kind = (request.get("kind") or {}).get("kind")
    if kind == "Pod" and request.get("operation") == "CREATE" and isinstance(pod, dict):
        decision = decide(pod, None)
        name = (pod.get("metadata") or {}).get("name") or (pod.get("metadata") or {}).get(
            "generateName", "?"
        )
        log.info("pod %s/%s: %s", request.get("namespace"), name, decision.reason)
        if decision.inject:
            ops = patch(pod, config)
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
    return {
        "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
        "kind": "AdmissionReview",
        "response": response,
    }
