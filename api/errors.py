"""One error shape for every 4xx/5xx: ``{"error": {"code", "message", "details"}}``.

Domain errors are mapped to HTTP here and nowhere else; no stack trace ever reaches a client."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from dialler.agents import errors as agent_errors

log = logging.getLogger("dialler.api")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorRead(BaseModel):
    """The one error shape, documented in OpenAPI for every 4xx/5xx."""

    error: ErrorDetail


class DomainError(Exception):
    """Base of the errors services raise; each subclass names its HTTP status and stable code."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"


class Unauthorized(DomainError):
    status_code = 401
    code = "unauthorized"


class TooManyRequests(DomainError):
    status_code = 429
    code = "too_many_requests"


class Unavailable(DomainError):
    status_code = 503
    code = "unavailable"


# Domain errors of the dialler package, by class (the most specific class in the MRO wins).
DOMAIN_STATUS: dict[type[Exception], int] = {
    agent_errors.InvalidCredentials: 401,
    agent_errors.InvalidToken: 401,
    agent_errors.PermissionDenied: 403,
    agent_errors.AgentNotFound: 404,
    agent_errors.EmailAlreadyUsed: 409,
    agent_errors.SelfLockout: 409,
    agent_errors.PresenceTransitionRefused: 409,
    agent_errors.WeakPassword: 422,
    agent_errors.InvalidPresenceReason: 422,
    agent_errors.LoginRateLimited: 429,
}


def domain_status(exc: Exception) -> int:
    for cls in type(exc).__mro__:
        if cls in DOMAIN_STATUS:
            return DOMAIN_STATUS[cls]
    return 400


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status_code, headers=headers)

    @app.exception_handler(agent_errors.AgentsError)
    async def agents_error(request: Request, exc: agent_errors.AgentsError) -> JSONResponse:
        status = domain_status(exc)
        headers: dict[str, str] = {}
        if status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if isinstance(exc, agent_errors.LoginRateLimited):
            headers["Retry-After"] = str(exc.retry_after_s)
        return JSONResponse(error_body(exc.code, exc.message, exc.details), status, headers=headers or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return JSONResponse(error_body(code, message), exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ())),
                "message": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in exc.errors()
        ]
        return JSONResponse(error_body("validation_error", "The request is not valid.", details), 422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"request_id": getattr(request.state, "request_id", None)})
        return JSONResponse(error_body("internal_error", "Something went wrong on our side."), 500)


class Unprocessable(DomainError):
    status_code = 422
    code = "unprocessable"
