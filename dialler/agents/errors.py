"""Domain errors of agents, authentication and presence.

Each carries a stable ``code`` and a message safe to show to the user, and derives from one kind of
:mod:`dialler.errors` (which ``api/errors.py`` maps to HTTP). Messages never contain a password, a
token or (for authentication failures) whether an account exists.
"""

from __future__ import annotations

from dialler.errors import Conflict, DiallerError, Forbidden, Invalid, NotFound, RateLimited, Unauthorized


class AgentsError(DiallerError):
    code = "agents_error"


# Authentication ---------------------------------------------------------------------------------


class InvalidCredentials(AgentsError, Unauthorized):
    """Wrong password, unknown email or disabled account: one answer for all three on purpose."""

    code = "invalid_credentials"

    def __init__(self) -> None:
        super().__init__("The email or password is incorrect.")


class LoginRateLimited(AgentsError, RateLimited):
    code = "too_many_login_attempts"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            "Too many failed sign-in attempts. Try again later.",
            {"retry_after_s": retry_after_s},
            retry_after_s=retry_after_s,
        )


class InvalidToken(AgentsError, Unauthorized):
    code = "invalid_token"

    def __init__(self, message: str = "The token is invalid or has expired; sign in again.") -> None:
        super().__init__(message)


class RefreshTokenReused(InvalidToken):
    """An already-rotated refresh token came back: someone else may hold the family, so it is revoked."""

    code = "refresh_token_reused"

    def __init__(self) -> None:
        super().__init__("This sign-in session was ended for safety because a refresh token was reused.")


class PermissionDenied(AgentsError, Forbidden):
    code = "forbidden"

    def __init__(self, missing: list[str]) -> None:
        super().__init__("Your role does not allow this.", {"missing_permissions": missing})


# Agent administration ---------------------------------------------------------------------------


class AgentNotFound(AgentsError, NotFound):
    code = "agent_not_found"

    def __init__(self, agent_id: int) -> None:
        super().__init__(f"Agent {agent_id} does not exist.")


class EmailAlreadyUsed(AgentsError, Conflict):
    code = "email_already_used"

    def __init__(self) -> None:
        super().__init__("Another agent already uses this email address.")


class WeakPassword(AgentsError, Invalid):
    code = "weak_password"


class SelfLockout(AgentsError, Conflict):
    """An admin may not disable or demote their own account (the last admin would lock everyone out)."""

    code = "self_lockout"


# Presence ---------------------------------------------------------------------------------------


class PresenceTransitionRefused(AgentsError, Conflict):
    code = "presence_transition_refused"

    def __init__(self, message: str, current: str, target: str) -> None:
        super().__init__(message, {"current": current, "target": target})


class InvalidPresenceReason(AgentsError, Invalid):
    code = "invalid_presence_reason"
