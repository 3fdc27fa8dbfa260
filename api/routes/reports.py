"""Reports over any period of UK days (``dialler.reports``): JSON for the Reports page, or CSV for
Excel with ``?format=csv`` (streamed, UTF-8 with a BOM, dates dd/mm/yyyy, times in UK local time).

``from`` and ``to`` are ISO dates (``2026-10-25``), both inclusive, defaulting to today on the business
clock; a period ending before it starts, or longer than 366 days, is a 422 that says so. Supervisors
read every report; an agent reads only their own agent report (a refusal is audited).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import text

from api.auth import PROTECTED_RESPONSES, audit_context, require
from api.deps import MAX_ID, SessionDep, StoresDep
from api.errors import Forbidden, NotFound
from dialler import clock
from dialler.agents.models import Agent
from dialler.agents.permissions import Permission, permissions_of
from dialler.audit.service import record_ctx
from dialler.config import Settings
from dialler.reports import csv, queries
from dialler.reports.periods import Period, period

router = APIRouter(prefix="/reports", tags=["reports"], responses=PROTECTED_RESPONSES)

CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "JSON, or CSV with format=csv"}
}


class Format(StrEnum):
    JSON = "json"
    CSV = "csv"


class NotOwnReport(Forbidden):
    """An agent asked for another agent's report (an object-level refusal, not a role's)."""

    code = "not_own_report"


class PeriodRead(BaseModel):
    first_day: date
    last_day: date
    start: datetime  # the real instant the first UK day began
    end: datetime  # ... and the last one ended (exclusive)
    hours: int


def _period_read(p: Period) -> PeriodRead:
    return PeriodRead(first_day=p.first_day, last_day=p.last_day, start=p.start, end=p.end, hours=len(p.hours()))


def _today(settings: Settings) -> date:
    return clock.now(settings).astimezone(ZoneInfo(settings.calling_timezone)).date()


def report_period(
    stores: StoresDep,
    first: Annotated[date | None, Query(alias="from", description="First UK day, ISO (default: today)")] = None,
    last: Annotated[date | None, Query(alias="to", description="Last UK day, inclusive (default: from)")] = None,
) -> Period:
    settings = stores.settings
    start = first or _today(settings)
    return period(start, last or start, tz=settings.calling_timezone, offset=clock.offset(settings))


PeriodDep = Annotated[Period, Depends(report_period)]
FormatQuery = Annotated[Format, Query(description="json (default) or csv (for Excel)")]


def _csv(name: str, p: Period, body: Iterator[str]) -> StreamingResponse:
    filename = f"{name}_{p.first_day:%Y-%m-%d}_{p.last_day:%Y-%m-%d}.csv"
    return StreamingResponse(
        (chunk.encode("utf-8") for chunk in body),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


class AgentsReportRead(BaseModel):
    period: PeriodRead
    agents: list[queries.AgentRow]


@router.get("/agents", response_model=AgentsReportRead, responses=CSV_RESPONSE)
async def agents_report(
    stores: StoresDep,
    p: PeriodDep,
    _: Annotated[Agent, Depends(require(Permission.REPORTS_READ))],
    format: FormatQuery = Format.JSON,
) -> Any:
    """Per agent: logged-in, available, on-call, wrap-up and break time (by reason) from the presence
    history clipped to the period; calls, contacts, calls per hour and outcomes."""
    async with stores.postgres.connect() as conn:
        rows = await queries.agent_report(conn, p, now=clock.instant())
    if format is Format.CSV:
        return _csv("agents", p, csv.agents_csv(p, rows))
    return AgentsReportRead(period=_period_read(p), agents=rows)


@router.get("/agents/{agent_id}", response_model=AgentsReportRead, responses=CSV_RESPONSE)
async def agent_report(
    request: Request,
    session: SessionDep,
    stores: StoresDep,
    p: PeriodDep,
    agent: Annotated[Agent, Depends(require(Permission.REPORTS_READ_OWN))],
    agent_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    format: FormatQuery = Format.JSON,
) -> Any:
    """One agent's report. An agent may read only their own; supervisors anyone's."""
    if agent_id != agent.id and Permission.REPORTS_READ not in permissions_of(agent.role):
        await record_ctx(
            audit_context(request, agent),
            session=session,
            action="report.access_denied",
            subject_type="agent",
            subject_id=str(agent_id),
        )
        await session.commit()
        raise NotOwnReport("You can only see your own report.")
    found = await session.execute(text("SELECT 1 FROM agents WHERE id = :id"), {"id": agent_id})
    if found.first() is None:
        raise NotFound("No such agent.")
    async with stores.postgres.connect() as conn:
        rows = await queries.agent_report(conn, p, now=clock.instant(), agent_id=agent_id)
    if format is Format.CSV:
        return _csv(f"agent-{agent_id}", p, csv.agents_csv(p, rows))
    return AgentsReportRead(period=_period_read(p), agents=rows)


class QueuesReportRead(BaseModel):
    period: PeriodRead
    report: queries.QueueReport


@router.get("/queues", response_model=QueuesReportRead, responses=CSV_RESPONSE)
async def queues_report(
    stores: StoresDep,
    p: PeriodDep,
    _: Annotated[Agent, Depends(require(Permission.REPORTS_READ))],
    format: FormatQuery = Format.JSON,
    conversion_days: Annotated[int, Query(ge=1, le=90, description="Days after a call a conversion counts")] = (
        queries.DEFAULT_CONVERSION_DAYS
    ),
) -> Any:
    """Per queue: attempts, contact rate, conversion (signatures and documents arriving through CDC within
    `conversion_days` of a call); callbacks kept, missed and rebooked; customers waiting by hour."""
    async with stores.postgres.connect() as conn:
        report = await queries.queue_report(conn, p, conversion_days=conversion_days)
    if format is Format.CSV:
        return _csv("queues", p, csv.queues_csv(p, report))
    return QueuesReportRead(period=_period_read(p), report=report)


class ComplianceReportRead(BaseModel):
    period: PeriodRead
    report: queries.ComplianceReport


@router.get("/compliance", response_model=ComplianceReportRead, responses=CSV_RESPONSE)
async def compliance_report(
    stores: StoresDep,
    p: PeriodDep,
    _: Annotated[Agent, Depends(require(Permission.REPORTS_READ))],
    format: FormatQuery = Format.JSON,
) -> Any:
    """Abandoned calls and the rolling 24-hour abandoned rate per queue, hour by hour, against the Ofcom
    ceiling (3 %) and our target (1 %); dials the compliance gate refused, by reason."""
    async with stores.postgres.connect() as conn:
        report = await queries.compliance_report(conn, p)
    if format is Format.CSV:
        return _csv("compliance", p, csv.compliance_csv(p, report))
    return ComplianceReportRead(period=_period_read(p), report=report)


class MessagingReportRead(BaseModel):
    period: PeriodRead
    report: queries.MessagingReport


@router.get("/messaging", response_model=MessagingReportRead, responses=CSV_RESPONSE)
async def messaging_report(
    stores: StoresDep,
    p: PeriodDep,
    _: Annotated[Agent, Depends(require(Permission.REPORTS_READ))],
    format: FormatQuery = Format.JSON,
) -> Any:
    """Texts sent, delivered, failed and received; STOPs; magic links sent, opened and completed."""
    async with stores.postgres.connect() as conn:
        report = await queries.messaging_report(conn, p)
    if format is Format.CSV:
        return _csv("messaging", p, csv.messaging_csv(p, report))
    return MessagingReportRead(period=_period_read(p), report=report)


class HourlyReportRead(BaseModel):
    period: PeriodRead
    hours: list[queries.HourRow]


@router.get("/hourly", response_model=HourlyReportRead, responses=CSV_RESPONSE)
async def hourly_report(
    stores: StoresDep,
    p: PeriodDep,
    _: Annotated[Agent, Depends(require(Permission.REPORTS_READ))],
    format: FormatQuery = Format.JSON,
) -> Any:
    """Calls started and contacts made in each hour of the period (23, 24 or 25 hours a UK day)."""
    async with stores.postgres.connect() as conn:
        rows = await queries.hourly_report(conn, p)
    if format is Format.CSV:
        return _csv("hourly", p, csv.hourly_csv(p, rows))
    return HourlyReportRead(period=_period_read(p), hours=rows)


class DepthReportRead(BaseModel):
    period: PeriodRead
    samples: list[queries.DepthSample]


@router.get("/queue-depth", response_model=DepthReportRead, responses=CSV_RESPONSE)
async def queue_depth_report(
    stores: StoresDep,
    p: PeriodDep,
    _: Annotated[Agent, Depends(require(Permission.REPORTS_READ))],
    format: FormatQuery = Format.JSON,
) -> Any:
    """Each queue's depth as sampled every minute (customers waiting over the day)."""
    async with stores.postgres.connect() as conn:
        samples = await queries.depth_samples(conn, p)
    if format is Format.CSV:
        return _csv("queue-depth", p, csv.depth_csv(p, samples))
    return DepthReportRead(period=_period_read(p), samples=samples)
