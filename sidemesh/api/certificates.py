"""The certificate signing endpoint, served over TLS by the control plane.

``POST /v1/certificates`` with ``Authorization: Bearer <token>`` and ``{"csr": PEM}``.
Errors map to HTTP statuses here, in one place."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from sidemesh.identity.ca import CaError
from sidemesh.identity.csr import CsrForAnotherIdentity, CsrRejected
from sidemesh.identity.service import SigningService, UnknownWorkload
from sidemesh.identity.tokens import InvalidToken


class CertificateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    csr: str
    """PEM certificate signing request; the key stays with the caller."""


def create_signing_app(service: SigningService) -> FastAPI:
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

    @app.get("/v1/trust-bundle", summary="The mesh's root certificate")
    async def trust_bundle() -> dict[str, str]:
        return {"trustBundle": service.ca.trust_bundle_pem.decode()}

    return app
