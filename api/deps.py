"""Request dependencies: the process's long-lived clients, handed to handlers through ``Annotated``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from dialler.config import Settings
from dialler.integrations.twilio import TwilioTelephony
from dialler.runtime import Stores, TemporalConnector


def get_stores(request: Request) -> Stores:
    return request.app.state.stores  # type: ignore[no-any-return]


def get_telephony(request: Request) -> TwilioTelephony:
    return request.app.state.telephony  # type: ignore[no-any-return]


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_session(stores: Annotated[Stores, Depends(get_stores)]) -> AsyncIterator[AsyncSession]:
    async with stores.sessions() as session:
        yield session


def get_redis(stores: Annotated[Stores, Depends(get_stores)]) -> Redis:
    return stores.redis


async def get_temporal(request: Request) -> Client:
    """The process's Temporal client, connecting (again) if start-up found Temporal down; 503 meanwhile."""
    connector: TemporalConnector = request.app.state.temporal_connector
    return await connector.get()


async def temporal_or_none(request: Request) -> Client | None:
    """For handlers that can do without Temporal (health, best-effort signals): None while it is down."""
    connector: TemporalConnector = request.app.state.temporal_connector
    return await connector.get_or_none()


StoresDep = Annotated[Stores, Depends(get_stores)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
TelephonyDep = Annotated[TwilioTelephony, Depends(get_telephony)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
RedisDep = Annotated[Redis, Depends(get_redis)]
TemporalDep = Annotated[Client, Depends(get_temporal)]

# Customer ids: BIGINT UNSIGNED on the replica, compared with BIGINT columns here, so capped at 2^63-1.
MAX_ID = 2**63 - 1
UserIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="The customer's id (replica users.id)")]
