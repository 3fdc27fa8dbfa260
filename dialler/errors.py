"""The one base of the dialler's domain errors, its kinds, and how a down dependency is recognised.

Every error a service raises for a caller to act on derives from :class:`DiallerError`: a stable
machine ``code`` (clients switch on it; never rename one) and a ``message`` safe to show to the user
(never a phone number, a token, a password or a stack trace), plus optional ``details``. The *kind*
(:class:`NotFound`, :class:`Conflict`, ...) says what went wrong in domain terms; ``api/errors.py``
is the only place that turns a kind into an HTTP status.

A dependency that does not answer (PostgreSQL, the replica, Redis, Temporal) is not a bug:
:func:`dependency_down` names it from the exception the driver raised, so the API can answer 503 with
``Retry-After`` instead of 500.
"""

from __future__ import annotations

from typing import Any, Literal

Dependency = Literal["postgres", "replica", "redis", "temporal"]

DEPENDENCY_ATTR = "dialler_dependency"
"""Set by the engines' hooks (``dialler/db/engines.py``) on a connection failure, naming the database
the failing engine belongs to: the exception types alone cannot tell PostgreSQL from the replica (asyncpg
raises a bare ``OSError`` on connect), and callers that catch ``SQLAlchemyError``/``OSError`` keep working
because the exception itself is not replaced."""


class DiallerError(Exception):
    """Base of every domain error. Subclasses set ``code`` (stable) and usually a fixed message."""

    code = "dialler_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DiallerError):
    code = "not_found"


class Conflict(DiallerError):
    """The request clashes with the current state (already done, held by someone else, refused now)."""

    code = "conflict"


class Forbidden(DiallerError):
    """The caller is known but may not do this (role, object-level refusal)."""

    code = "forbidden"


class Unauthorized(DiallerError):
    """The caller is not (or no longer) authenticated."""

    code = "unauthorized"


class Invalid(DiallerError):
    """The input is well-formed but breaks a domain rule (validation)."""

    code = "unprocessable"


class Gone(DiallerError):
    """It existed but is over for good (an expired link)."""

    code = "gone"


class RateLimited(DiallerError):
    code = "too_many_requests"

    def __init__(self, message: str, details: Any = None, *, retry_after_s: int = 60) -> None:
        super().__init__(message, details)
        self.retry_after_s = retry_after_s


class DependencyUnavailable(DiallerError):
    """A service the dialler needs does not answer now; the same request may succeed shortly."""

    code = "unavailable"
    RETRY_AFTER_S = 5

    def __init__(
        self,
        message: str | None = None,
        details: Any = None,
        *,
        dependency: Dependency | None = None,
        retry_after_s: int = RETRY_AFTER_S,
    ) -> None:
        what = _NAMES.get(dependency or "", "A service the dialler needs")
        super().__init__(message or f"{what} is not reachable right now; try again shortly.", details)
        self.dependency = dependency
        self.retry_after_s = retry_after_s


_NAMES = {"postgres": "The database", "replica": "The claims replica", "redis": "Redis", "temporal": "Temporal"}


def dependency_down(exc: BaseException) -> Dependency | None:
    """Which dependency ``exc`` says is unreachable, or None if it is not a connection failure.

    Looks through the exception, its ``orig`` (SQLAlchemy's wrapped DBAPI error) and its explicit causes
    (``raise ... from``), not the implicit context: a bug in a fallback that ran *because* Redis was down
    is still a bug, not an outage."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _classify(current)
        if found is not None:
            return found
        orig = getattr(current, "orig", None)
        if isinstance(orig, BaseException) and id(orig) not in seen:
            found = _classify(orig)
            if found is not None:
                return found
        current = current.__cause__
    return None


def _classify(exc: BaseException) -> Dependency | None:
    if isinstance(exc, DependencyUnavailable):
        return exc.dependency
    tagged = getattr(exc, DEPENDENCY_ATTR, None)
    if tagged is not None:
        return tagged  # type: ignore[no-any-return]
    # Imported here: dialler.errors is imported by workflow code, which must not load network clients.
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return "redis"
    from temporalio.service import RPCError, RPCStatusCode

    if isinstance(exc, RPCError) and exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
        return "temporal"
    return None
