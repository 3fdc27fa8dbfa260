"""Customers on the test replica, written as the main app would, for the SMS and magic-link tests."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

TS = "2024-01-15 10:00:00"


@dataclass(frozen=True)
class Customer:
    user_id: int
    phone_raw: str
    e164: str
    claim_id: int
    requirement_id: int


async def add_customer(
    replica: AsyncEngine,
    user_id: int,
    *,
    phone: str = "07700 900123",
    e164: str = "+447700900123",
    signed: bool = False,
) -> Customer:
    """An active customer with one active claim and one pending requirement (unsigned unless ``signed``:
    the unsigned queue, else outstanding_requests). Claim and requirement ids follow the user id."""
    claim_id, requirement_id = user_id * 10, user_id * 100
    async with replica.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, first_name, last_name, phone_number, current_signature_file_id, status,"
                " created_at, updated_at) VALUES (:id, 'Ada', 'Lovelace', :phone, :sig, 'active', :ts, :ts)"
            ),
            {"id": user_id, "phone": phone, "sig": 1 if signed else None, "ts": TS},
        )
        await conn.execute(
            text(
                "INSERT INTO claims (id, user_id, lender, type, status, created_at, updated_at)"
                " VALUES (:id, :user, 'Black Horse', 'motor_finance', 'new', :ts, :ts)"
            ),
            {"id": claim_id, "user": user_id, "ts": TS},
        )
        await conn.execute(
            text(
                "INSERT INTO claim_requirements (id, claim_id, type, status, created_at, updated_at)"
                " VALUES (:id, :claim, 'bank_statement', 'PENDING', :ts, :ts)"
            ),
            {"id": requirement_id, "claim": claim_id, "ts": TS},
        )
    return Customer(user_id, phone, e164, claim_id, requirement_id)
