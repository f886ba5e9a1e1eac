"""The certificate signing endpoint, served over TLS by the control plane, and the
REST registration of workloads beside it (the two things a host's agent asks of the
control plane with its workload's token).

``POST /v1/certificates`` with ``Authorization: Bearer <token>`` and ``{"csr": PEM}``.
``POST /v1/registrations`` with the token and ``{"namespace", "workload", "ttlSeconds"}``
(a ``workloads:`` entry of mesh.yaml), posted again every third of the TTL;
``DELETE /v1/registrations/{namespace}/{name}`` on a clean stop. Registrations are
written into the mesh's etcd (``--etcd``), for hosts that may not reach it.
Errors map to HTTP statuses here, in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from sidemesh.identity.ca import CaError
from sidemesh.identity.csr import CsrForAnotherIdentity, CsrRejected
from sidemesh.identity.service import SigningService, UnknownWorkload
from sidemesh.identity.tokens import InvalidToken
from sidemesh.model import Workload
from sidemesh.model.refs import WorkloadRef
from sidemesh.model.registry import DEFAULT_LEASE_TTL_S
from sidemesh.sources.etcd.relay import RegistrationRelay, RelayUnavailable

log = logging.getLogger(__name__)


class RegistrationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    namespace: str = "default"
    workload: dict[str, Any]
    """The workload as mesh.yaml writes one: name, service, address, ports, labels."""
    ttl_seconds: int = Field(default=DEFAULT_LEASE_TTL_S, ge=2, le=3600)
    """How long it stays without being posted again (a host that dies drops out)."""


class CertificateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csr: str
    """PEM certificate signing request; the key stays with the caller."""


def create_signing_app(service: SigningService, relay: RegistrationRelay | None = None) -> FastAPI:
    """``relay``: where REST registrations go (None: the mesh has no etcd, and the
    registration routes answer 404 saying so)."""
    app = FastAPI(title="sidemesh certificate authority", version="1")

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        # A body that is not a certificate request at all is refused too, and counted
        # with the rest (sidemesh_certificates_refused_total{reason="malformed"}).
        service.refused["malformed"] += 1
        return JSONResponse(status_code=422, content={"detail": jsonable_encoder(exc.errors())})

    @app.post("/v1/certificates", summary="Sign a workload's CSR for its own SPIFFE ID")
    async def sign(
        request: CertificateRequest, authorization: str = Header(default="")
    ) -> dict[str, Any]:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            token = ""
        try:
            issued = await service.sign(token, request.csr.encode())
        except InvalidToken as exc:
            raise HTTPException(
                401,
                f"{exc}: send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            ) from exc
        except (UnknownWorkload, CsrForAnotherIdentity) as exc:
            raise HTTPException(403, str(exc)) from exc
        except CsrRejected as exc:
            raise HTTPException(400, str(exc)) from exc
        except CaError as exc:
            raise HTTPException(503, str(exc)) from exc
        return {
            "identity": issued.identity.uri,
            "serial": f"{issued.serial:x}",
            "notAfter": issued.not_after.isoformat(),
            "certificateChain": issued.chain_pem.decode(),
            "trustBundle": service.ca.trust_bundle_pem.decode(),
        }

    async def caller(authorization: str) -> WorkloadRef:
        scheme, _, token = authorization.partition(" ")
        try:
            return await service.validator.validate(token if scheme.lower() == "bearer" else "")
        except InvalidToken as exc:
            log.warning("refused a registration: %s", exc)
            raise HTTPException(
                401,
                f"{exc}: send Authorization: Bearer <the workload's token>",
                headers={"WWW-Authenticate": "Bearer"},
            ) from exc

    def registry() -> RegistrationRelay:
        if relay is None:
            raise HTTPException(
                404, "this control plane has no registry: run it with --etcd to take registrations"
            )
        return relay

    @app.post(
        "/v1/registrations",
        status_code=201,
        summary="Register (or keep registered) the workload whose token is sent",
    )
    async def register(
        request: RegistrationRequest, authorization: str = Header(default="")
    ) -> dict[str, Any]:
        target = registry()
        workload = await caller(authorization)
        try:
            entry = Workload.model_validate(request.workload)
        except ValidationError as exc:
            problems = "; ".join(
                f"workload.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise HTTPException(422, problems) from exc
        claimed = WorkloadRef(entry.name, request.namespace)
        if claimed != workload:
            log.warning("refused a registration of %s by the token of %s", claimed, workload)
            raise HTTPException(403, f"the token is {workload}'s, not {claimed}'s")
        try:
            await target.register(request.namespace, request.workload, request.ttl_seconds)
        except RelayUnavailable as exc:
            raise HTTPException(503, str(exc)) from exc
        return {"workload": str(workload), "ttlSeconds": request.ttl_seconds}

    @app.delete(
        "/v1/registrations/{namespace}/{name}",
        summary="Deregister the workload whose token is sent, at once",
    )
    async def deregister(
        namespace: str, name: str, authorization: str = Header(default="")
    ) -> dict[str, Any]:
        target = registry()
        workload = await caller(authorization)
        if WorkloadRef(name, namespace) != workload:
            raise HTTPException(403, f"the token is {workload}'s, not {name}.{namespace}'s")
        try:
            found = await target.deregister(namespace, name)
        except RelayUnavailable as exc:
            raise HTTPException(503, str(exc)) from exc
        if not found:
            raise HTTPException(404, f"{workload} was not registered through this control plane")
        return {"workload": str(workload)}

    @app.get("/v1/trust-bundle", summary="The mesh's root certificate")
    async def trust_bundle() -> dict[str, str]:
        return {"trustBundle": service.ca.trust_bundle_pem.decode()}

    return app
