"""The reports API: who may read which report, the CSV exports Excel opens correctly, and bad periods.

Rows are the hand-checked day of tests/support/reports.py (Sunday 25/10/2026, the clocks go back).
"""

from __future__ import annotations

import csv
import io

import httpx
import pytest
from sqlalchemy import text

from dialler.agents.models import Role
from dialler.config import Settings
from dialler.runtime import Stores
from tests.support.api_agents import LoginAs
from tests.support.reports import seed

DAY = {"from": "2026-10-25", "to": "2026-10-25"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The seeded rows are real instants on a fixed day: no demo shift of the business clock here.
    return settings.model_copy(update={"clock_offset_s": 0})


@pytest.fixture
async def zoe(stores: Stores) -> int:
    async with stores.sessions() as session:
        return await seed(session)


async def test_a_supervisor_reads_every_report_of_a_dst_day(
    client: httpx.AsyncClient, login_as: LoginAs, zoe: int
) -> None:
    headers = (await login_as(Role.SUPERVISOR)).headers

    agents = (await client.get("/api/v1/reports/agents", params=DAY, headers=headers)).json()
    assert agents["period"]["hours"] == 25
    (row,) = [a for a in agents["agents"] if a["agent_id"] == zoe]
    assert (row["display_name"], row["on_call_s"], row["logged_in_s"], row["calls"]) == ("Zoë Ångström", 1800, 16800, 2)
    compliance = (await client.get("/api/v1/reports/compliance", params=DAY, headers=headers)).json()["report"]
    assert (compliance["answered"], compliance["abandoned"], compliance["ceiling"]) == (2, 1, 0.03)
    queues = (await client.get("/api/v1/reports/queues", params=DAY, headers=headers)).json()["report"]
    assert next(q for q in queues["queues"] if q["queue"] == "unsigned")["conversion_rate"] == 0.5
    messaging = (await client.get("/api/v1/reports/messaging", params=DAY, headers=headers)).json()["report"]
    assert (messaging["texts_sent"], messaging["stops"], messaging["links_completed"]) == (4, 1, 1)
    hourly = (await client.get("/api/v1/reports/hourly", params=DAY, headers=headers)).json()
    assert len(hourly["hours"]) == 25


async def test_csv_export_is_excel_ready_utf8_with_uk_dates(
    client: httpx.AsyncClient, login_as: LoginAs, zoe: int
) -> None:
    headers = (await login_as(Role.SUPERVISOR)).headers

    response = await client.get("/api/v1/reports/agents", params={**DAY, "format": "csv"}, headers=headers)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="agents_2026-10-25_2026-10-25.csv"'
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    (row,) = [r for r in rows if r["Agent ID"] == str(zoe)]
    assert (row["Agent"], row["From"], row["On call (s)"], row["Breaks by reason"]) == (
        "Zoë Ångström",
        "25/10/2026",
        "1800",
        "lunch=3600",
    )
    hourly = await client.get("/api/v1/reports/compliance", params={**DAY, "format": "csv"}, headers=headers)
    lines = hourly.content.decode("utf-8-sig").splitlines()
    assert any(line.startswith("25/10/2026 01:00 GMT,unsigned,2,1,3,1,0.3333,yes,yes") for line in lines)


async def test_an_agent_sees_only_their_own_report_and_a_refusal_is_audited(
    client: httpx.AsyncClient, login_as: LoginAs, stores: Stores, zoe: int
) -> None:
    me = await login_as(Role.AGENT)

    own = await client.get(f"/api/v1/reports/agents/{me.agent.id}", params=DAY, headers=me.headers)
    other = await client.get(f"/api/v1/reports/agents/{zoe}", params=DAY, headers=me.headers)
    everyone = await client.get("/api/v1/reports/agents", params=DAY, headers=me.headers)
    queues = await client.get("/api/v1/reports/queues", params=DAY, headers=me.headers)

    assert own.status_code == 200 and own.json()["agents"] == []
    assert other.status_code == 403 and other.json()["error"]["code"] == "not_own_report"
    assert (everyone.status_code, queues.status_code) == (403, 403)
    async with stores.postgres.connect() as conn:
        audited = (
            await conn.execute(
                text("SELECT actor_agent_id, subject_id FROM audit_log WHERE action = 'report.access_denied'")
            )
        ).all()
    assert [(a, s) for a, s in audited] == [(me.agent.id, str(zoe))]
    supervisor = (await login_as(Role.SUPERVISOR)).headers
    theirs = await client.get(f"/api/v1/reports/agents/{zoe}", params=DAY, headers=supervisor)
    assert theirs.status_code == 200 and theirs.json()["agents"][0]["display_name"] == "Zoë Ångström"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2026-10-25", "to": "2026-10-24"}, "before it starts"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, "at most 366 days"),
        ({"from": "25/10/2026"}, ""),
    ],
)
async def test_bad_periods_are_422_with_a_message(
    client: httpx.AsyncClient, login_as: LoginAs, params: dict[str, str], message: str
) -> None:
    headers = (await login_as(Role.SUPERVISOR)).headers

    response = await client.get("/api/v1/reports/hourly", params=params, headers=headers)

    assert response.status_code == 422
    assert message in response.json()["error"]["message"]
