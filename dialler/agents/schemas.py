"""Request and response shapes of agents, authentication and presence.

No read schema has a password or hash field, and the write schemas take passwords as ``SecretStr`` so
that a stray ``repr`` or log line shows ``**********``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, SecretStr, field_validator

from dialler.agents.models import Role
from dialler.agents.presence import PresenceState
from dialler.queues.eligibility import QueueName  # one home for the queue names

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256  # bounds the hashing work one request can cause

# Mirrors dialler.queues.keys.QUEUES; a Literal so that the OpenAPI spec lists the choices.


def clean_text(value: str) -> str:
    """Refuses text PostgreSQL or UTF-8 cannot store (NUL, lone surrogates), so it fails as a 422
    at the edge instead of as a driver error deep inside a service."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


def _clean_secret(value: SecretStr) -> SecretStr:
    clean_text(value.get_secret_value())
    return value


CleanStr = Annotated[str, AfterValidator(clean_text)]
Password = Annotated[
    SecretStr,
    Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH),
    AfterValidator(_clean_secret),
]
DisplayName = Annotated[CleanStr, Field(min_length=1, max_length=120)]


def _unique(queues: list[QueueName] | None) -> list[QueueName] | None:
    return None if queues is None else list(dict.fromkeys(queues))


# Authentication ---------------------------------------------------------------------------------


class LoginRequest(BaseModel):
    # A plain string, not EmailStr: a malformed address gets the same 401 as a wrong password.
    email: CleanStr = Field(min_length=1, max_length=255)
    password: Annotated[SecretStr, AfterValidator(_clean_secret)] = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class RefreshRequest(BaseModel):
    refresh_token: Annotated[SecretStr, AfterValidator(_clean_secret)] = Field(min_length=1, max_length=256)


class LogoutRequest(RefreshRequest):
    pass


class TokenRead(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str
    refresh_expires_in: int = Field(description="Seconds until this sign-in ends; refresh before then.")


# Agents -----------------------------------------------------------------------------------------


class AgentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    display_name: str
    role: Role
    queues: list[str]
    trained_vulnerable: bool
    progressive_mode: bool
    active: bool
    created_at: datetime
    updated_at: datetime


class MeRead(AgentRead):
    permissions: list[str]


class AgentCreate(BaseModel):
    email: EmailStr = Field(max_length=255)
    display_name: DisplayName
    password: Password
    role: Role = Role.AGENT
    queues: list[QueueName] = Field(default_factory=list, max_length=3)
    trained_vulnerable: bool = False
    progressive_mode: bool = False

    _queues = field_validator("queues")(_unique)


class AgentUpdate(BaseModel):
    """Only the fields sent are changed. Use the disable/enable and password routes for those."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr | None = Field(default=None, max_length=255)
    display_name: DisplayName | None = None
    role: Role | None = None
    queues: list[QueueName] | None = Field(default=None, max_length=3)
    trained_vulnerable: bool | None = None
    progressive_mode: bool | None = None

    _queues = field_validator("queues")(_unique)


class PasswordReset(BaseModel):
    new_password: Password


class AgentPage(BaseModel):
    items: list[AgentRead]
    total: int
    limit: int
    offset: int


# Presence ---------------------------------------------------------------------------------------


class PresenceRead(BaseModel):
    agent_id: int
    state: PresenceState
    reason: str | None
    since: datetime | None
    seconds_in_state: float | None
    user_id: int | None = Field(default=None, description="The customer a call state is about.")
    can_set: list[PresenceState] = Field(description="States the agent may choose from here.")


class PresenceUpdate(BaseModel):
    state: PresenceState
    reason: CleanStr | None = Field(default=None, max_length=64, description="Required for a break.")


class AgentPresenceRead(BaseModel):
    agent_id: int
    display_name: str
    role: Role
    queues: list[str]
    state: PresenceState
    reason: str | None
    since: datetime | None
    seconds_in_state: float | None
    user_id: int | None


class AgentPresenceList(BaseModel):
    items: list[AgentPresenceRead]
    counts: dict[str, int] = Field(description="Agents per state.")
    at: datetime
