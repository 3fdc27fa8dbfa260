"""The routes the web UI adds: its configuration, the agent's live state, the held customer, callback
slots, the supervisor dashboard (conditional GETs), and the pages themselves."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from dialler import clock
from dialler.agents.models import Role
from dialler.callbacks.models import Callback
from dialler.calls.inbound import device_key
from dialler.compliance import gates
from dialler.config import Environment, Settings
from dialler.integrations import twilio_voice
from dialler.runtime import Stores
from tests.support.api_agents import LoginAs

SLOTS = "/api/v1/callbacks/slots"


async def test_callback_slots_are_inside_calling_hours_uk_time_and_bookable_in_real_time(
    client: httpx.AsyncClient, login_as: LoginAs, settings: Settings
) -> None:
    agent = await login_as()
    before = datetime.now(UTC)

    page = (await client.get(SLOTS, params={"count": 300}, headers=agent.headers)).json()

    rules = gates.CallingRules.from_settings(settings)
    slots = page["slots"]
    assert len(slots) == 300 and page["timezone"] == "Europe/London"
    for slot in slots:
        at, local = datetime.fromisoformat(slot["at"]), datetime.fromisoformat(slot["local"])
        assert local.utcoffset() == local.astimezone(ZoneInfo("Europe/London")).utcoffset()
        assert at == local - clock.offset(settings)  # booked in real time; judged on the compliance clock
        assert gates.calling_window(local, rules).allowed, slot
        assert local.minute % 15 == 0 and local.second == 0
    assert datetime.fromisoformat(slots[0]["at"]) >= before + timedelta(minutes=5)
    assert [s["at"] for s in slots] == sorted(s["at"] for s in slots)
    assert {datetime.fromisoformat(s["local"]).weekday() for s in slots} <= {0, 1, 2, 3, 4, 5}  # never a Sunday

    later = (await client.get(SLOTS, params={"count": 5, "from": page["next_from"]}, headers=agent.headers)).json()
    assert later["slots"][0]["at"] > slots[-1]["at"]
    too_far = await client.get(SLOTS, params={"from": (before + timedelta(days=90)).isoformat()}, headers=agent.headers)
    assert too_far.status_code == 422 and too_far.json()["error"]["code"] == "unprocessable"


async def test_ui_config_derives_each_dispositions_fields_from_the_validator(
    client: httpx.AsyncClient, login_as: LoginAs, settings: Settings
) -> None:
    agent = await login_as()

    config = (await client.get("/api/v1/ui/config", headers=agent.headers)).json()

    rules = {d["code"]: d for d in config["dispositions"]}
    assert "no_outcome" not in rules  # set by the system only
    assert [c for c, d in rules.items() if d["needs_callback_time"]] == ["callback_requested"]
    assert sorted(c for c, d in rules.items() if d["needs_note"]) == ["complaint", "vulnerable_flagged"]
    assert rules["signed_on_call"]["needs_answered_call"] and not rules["no_answer"]["needs_answered_call"]
    assert config["break_reasons"] and config["telephony_mode"] == "twilio"
    assert config["features"] == {"callbacks_mine": True}
    assert config["phone_emulator_url"] == twilio_voice.browser_phone_emulator_url(settings)  # the tests' emulator


class TestAgainstTheTwilioEmulator:
    """Development with the SDK pointed at the local emulator: the browser phone registers there."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"twilio_api_base_url": "http://127.0.0.1:4010/"})

    async def test_ui_config_names_the_emulator_to_the_browser_phone_but_never_in_production(
        self, client: httpx.AsyncClient, login_as: LoginAs, settings: Settings
    ) -> None:
        agent = await login_as()

        config = (await client.get("/api/v1/ui/config", headers=agent.headers)).json()

        assert config["phone_emulator_url"] == "http://127.0.0.1:4010"
        production = settings.model_copy(update={"environment": Environment.PRODUCTION})
        assert twilio_voice.browser_phone_emulator_url(production) is None
        real_twilio = settings.model_copy(update={"twilio_api_base_url": None})
        assert twilio_voice.browser_phone_emulator_url(real_twilio) is None

    async def test_a_phone_that_has_gone_is_not_ready_at_once(
        self, client: httpx.AsyncClient, login_as: LoginAs, stores: Stores
    ) -> None:
        agent = await login_as()
        key = device_key(stores.settings, agent.agent.id)

        assert (await client.post("/api/v1/voice/device-ready", headers=agent.headers)).status_code == 204
        ready = await stores.redis.exists(key)
        assert (await client.delete("/api/v1/voice/device-ready", headers=agent.headers)).status_code == 204

        assert ready and not await stores.redis.exists(key)


async def test_live_state_is_a_conditional_get(client: httpx.AsyncClient, login_as: LoginAs) -> None:
    agent = await login_as()
    live = "/api/v1/agents/me/live"

    first = await client.get(live, headers=agent.headers)
    same = await client.get(live, headers={**agent.headers, "If-None-Match": first.headers["ETag"]})
    await client.put("/api/v1/agents/me/presence", json={"state": "available"}, headers=agent.headers)
    moved = await client.get(live, headers={**agent.headers, "If-None-Match": first.headers["ETag"]})

    assert first.status_code == 200 and first.json()["presence"]["state"] == "offline"
    assert first.json()["call"] is None and first.json()["sms"] is None
    assert same.status_code == 304 and same.content == b"" and same.headers["ETag"] == first.headers["ETag"]
    assert moved.status_code == 200 and moved.json()["presence"]["state"] == "available"
    assert moved.headers["ETag"] != first.headers["ETag"]


async def test_my_customer_is_404_when_holding_nobody(client: httpx.AsyncClient, login_as: LoginAs) -> None:
    agent = await login_as()

    response = await client.get("/api/v1/agents/me/customer", headers=agent.headers)

    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


async def test_presence_options_list_the_break_reasons(
    client: httpx.AsyncClient, login_as: LoginAs, settings: Settings
) -> None:
    agent = await login_as()

    options = (await client.get("/api/v1/agents/me/presence/options", headers=agent.headers)).json()

    assert options == {"state": "offline", "can_set": ["available"], "break_reasons": settings.break_reasons}


async def test_dashboard_counts_and_answers_304_until_something_changes(
    client: httpx.AsyncClient, login_as: LoginAs
) -> None:
    supervisor = await login_as(Role.SUPERVISOR)
    agent = await login_as(Role.AGENT)
    url = "/api/v1/dashboard"

    first = await client.get(url, headers=supervisor.headers)
    etag = first.headers["ETag"]
    again = await client.get(url, headers={**supervisor.headers, "If-None-Match": f'W/{etag}, "other"'})
    await client.put("/api/v1/agents/me/presence", json={"state": "available"}, headers=agent.headers)
    await asyncio.sleep(1.1)  # the shared snapshot lives for a second
    changed = await client.get(url, headers={**supervisor.headers, "If-None-Match": etag})

    body = first.json()
    assert first.status_code == 200 and first.headers["Cache-Control"] == "private, no-cache"
    assert body["agents"]["counts"]["offline"] == 2 and len(body["agents"]["items"]) == 2
    assert body["outcomes_today"] == {"total": 0, "contacts": 0, "contact_rate": None, "by_disposition": {}}
    assert body["abandoned_24h"]["rate"] is None and body["last_rebuild"] is None
    assert [q["queue"] for q in body["queues"]] == ["callbacks", "unsigned", "outstanding_requests"]
    assert body["cdc"]["lag_s"] is None and body["cdc"]["dlq_messages"] == 0
    assert again.status_code == 304
    assert changed.status_code == 200 and changed.json()["agents"]["counts"]["available"] == 1


async def test_pages_and_assets_are_served_with_a_strict_policy(client: httpx.AsyncClient) -> None:
    for path in ("/", "/agent", "/supervisor", "/admin"):
        page = await client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    script = await client.get("/static/js/api.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == "no-cache"
    cached = await client.get("/static/js/api.js", headers={"If-None-Match": script.headers["etag"]})
    assert cached.status_code == 304
    assert (await client.get("/static/vendor/twilio-voice-sdk/LICENSE.md")).status_code == 200
    assert (await client.get("/static/../pyproject.toml")).status_code == 404


async def test_my_callbacks_lists_a_callback_as_due_from_its_due_time_even_before_the_workflow_records_it(
    client: httpx.AsyncClient, login_as: LoginAs, stores: Stores
) -> None:
    agent = await login_as()
    now = datetime.now(UTC)
    async with stores.sessions() as session:
        for user_id, due_at, status in (
            (1, now - timedelta(seconds=5), "scheduled"),  # due: the 'due' bookkeeping has not run yet
            (2, now + timedelta(hours=1), "scheduled"),
            (3, now - timedelta(minutes=5), "open"),
        ):
            session.add(
                Callback(
                    workflow_id=f"callback-{user_id}",
                    workflow_run_key=f"run-{user_id}",
                    user_id=user_id,
                    booked_by_agent_id=agent.agent.id,
                    owner_agent_id=agent.agent.id,
                    due_at=due_at,
                    status=status,
                )
            )
        await session.commit()

    mine = (await client.get("/api/v1/callbacks/mine", headers=agent.headers)).json()

    assert [c["user_id"] for c in mine["due"]] == [3, 1]
    assert [c["user_id"] for c in mine["upcoming"]] == [2]
