"""Test agents for the API tests: the default password and the shapes of the make_agent and login_as
fixtures (tests/api/conftest.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dialler.agents.models import Agent

DEFAULT_PASSWORD = "correct-horse-battery-staple"


MakeAgent = Callable[..., Awaitable[Agent]]


@dataclass(frozen=True)
class SignedIn:
    agent: Agent
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


LoginAs = Callable[..., Awaitable[SignedIn]]
