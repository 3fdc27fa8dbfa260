"""The API's one error table and its one error shape.

Shape, for every 4xx/5xx (documented in OpenAPI as :class:`ErrorRead`)::

    {"error": {"code": "<stable machine code>", "message": "<safe to show>", "details": <any or null>}}

A dependency that does not answer is 503 with a ``Retry-After`` header and
``details = {"dependency": "postgres" | "replica" | "redis" | "temporal", "retry_after_s": n}``.

Domain errors (:class:`dialler.errors.DiallerError` and its kinds) are mapped to HTTP here and nowhere
else: routes raise or let through domain errors and never build a status themselves. No stack trace
ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from dialler import errors as domain
from dialler.errors import DependencyUnavailable, DiallerError, dependency_down

log = logging.getLogger("dialler.api")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorRead(BaseModel):
    """The one error shape, documented in OpenAPI for every 4xx/5xx."""

    error: ErrorDetail


# The names the routes raise (the domain kinds, under their HTTP-flavoured names).
DomainError = DiallerError
NotFound = domain.NotFound
Conflict = domain.Conflict
Forbidden = domain.Forbidden
Unauthorized = domain.Unauthorized
Unprocessable = domain.Invalid
TooManyRequests = domain.RateLimited
Unavailable = DependencyUnavailable

# THE table: a domain error's kind -> HTTP status (the most specific kind in the MRO wins; a
# DiallerError of no kind is a plain 400).
STATUS: dict[type[DiallerError], int] = {
    domain.Unauthorized: 401,
    domain.Forbidden: 403,
    domain.NotFound: 404,
    domain.Conflict: 409,
    domain.Gone: 410,
    domain.Invalid: 422,
    domain.RateLimited: 429,
    DependencyUnavailable: 503,
}


def status_of(exc: DiallerError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(exc: DiallerError) -> JSONResponse:
    status = status_of(exc)
    headers: dict[str, str] = {}
    details = exc.details
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, domain.RateLimited | DependencyUnavailable):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, DependencyUnavailable):
        details = {**(details or {}), "dependency": exc.dependency, "retry_after_s": exc.retry_after_s}
    return JSONResponse(error_body(exc.code, exc.message, details), status, headers=headers or None)


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
    @app.exception_handler(DiallerError)
    async def domain_error(request: Request, exc: DiallerError) -> JSONResponse:
        return error_response(exc)

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

    # A driver's "cannot reach it" is an outage of that dependency, not a bug: 503 naming it. Registered
    # by type (not under ``Exception``) so that it is answered like a domain error; anything else of these
    # types is re-raised to the 500 handler below.
    async def dependency_error(request: Request, exc: Exception) -> JSONResponse:
        dependency = dependency_down(exc)
        if dependency is None:
            raise exc
        log.warning(
            "%s unreachable: %s",
            dependency,
            type(exc).__name__,
            extra={"request_id": getattr(request.state, "request_id", None)},
        )
        settings = getattr(request.app.state, "settings", None)
        retry = settings.dependency_retry_after_s if settings is not None else DependencyUnavailable.RETRY_AFTER_S
        return error_response(DependencyUnavailable(dependency=dependency, retry_after_s=retry))

    for infrastructure in (OSError, SQLAlchemyError, RedisError, RPCError):  # TimeoutError is an OSError
        app.add_exception_handler(infrastructure, dependency_error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"request_id": getattr(request.state, "request_id", None)})
        return JSONResponse(error_body("internal_error", "Something went wrong on our side."), 500)
