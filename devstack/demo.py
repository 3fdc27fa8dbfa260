"""Demo accounts for development and the demo stack. Passwords are for local use only."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from dialler.agents.models import Agent, Role
from dialler.agents.passwords import hash_password


@dataclass(frozen=True)
class DemoAccount:
    email: str
    name: str
    role: Role
    queues: tuple[str, ...]
    trained_vulnerable: bool = False
    password: str = "dialler-demo"


DEMO_ACCOUNTS = (
    DemoAccount("priya@rmc.example", "Priya Shah", Role.AGENT, ("unsigned", "callbacks"), trained_vulnerable=True),
    DemoAccount("tom@rmc.example", "Tom Evans", Role.AGENT, ("unsigned",)),
    DemoAccount("aisha@rmc.example", "Aisha Khan", Role.AGENT, ("outstanding_requests", "callbacks")),
    DemoAccount("dan@rmc.example", "Dan Murphy", Role.AGENT, ("callbacks", "unsigned", "outstanding_requests")),
    DemoAccount(
        "sam@rmc.example", "Sam Clarke", Role.SUPERVISOR, ("callbacks", "unsigned", "outstanding_requests"), True
    ),
    DemoAccount("cora@rmc.example", "Cora Lane", Role.COMPLIANCE, ()),
    DemoAccount("ada@rmc.example", "Ada Admin", Role.ADMIN, ()),
)


async def ensure_demo_accounts(session: AsyncSession) -> int:
    """Create the demo accounts that do not exist yet. Returns how many were created."""
    created = 0
    for account in DEMO_ACCOUNTS:
        exists = await session.scalar(select(Agent.id).where(func.lower(Agent.email) == account.email))
        if exists is None:
            session.add(
                Agent(
                    email=account.email,
                    display_name=account.name,
                    password_hash=hash_password(account.password),
                    role=account.role,
                    queues=list(account.queues),
                    trained_vulnerable=account.trained_vulnerable,
                )
            )
            created += 1
    await session.commit()
    return created
