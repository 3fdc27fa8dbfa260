"""The compliance officer's desk end to end: outcomes that need a person reach the review queue, the
desk works it (supervisors read it), the vulnerable flag an agent sets holds, do-not-call management."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from dialler.calls.dispositions import Disposition
from dialler.calls.messages import call_workflow_id
from dialler.compliance import facts as compliance_facts
from dialler.compliance import gate, gates, reviews
from dialler.queues.phones import normalise_phone
from dialler.queues.rebuild import recompute
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores
from tests.support.call_sessions import queue_one_customer, start_available
from tests.support.journeys import talk_then_hang_up
from tests.support.live_api import login

pytestmark = pytest.mark.e2e


async def call_with_outcome(
    http: httpx.AsyncClient, temporal_client: Client, headers: dict[str, str], disposition: str, notes: str
) -> tuple[str, int]:
    """Take the next call, talk, hang up and record ``disposition``; the session's id and customer."""
    offered = (await http.post("/api/v1/agents/me/next-call", headers=headers)).json()
    session_id, user_id = offered["session_id"], offered["customer"]["user_id"]
    await talk_then_hang_up(http, headers, session_id)
    response = await http.post(
        f"/api/v1/calls/{session_id}/outcome", json={"disposition": disposition, "notes": notes}, headers=headers
    )
    assert response.status_code == 200, response.text
    await temporal_client.get_workflow_handle(call_workflow_id(user_id)).result()
    return session_id, user_id


# Each outcome that needs a person, the agent's notes on it, and the review kind it opens.
NEEDS_REVIEW = [
    pytest.param("complaint", "unhappy we keep calling about the car loan", "complaint", id="complaint"),
    pytest.param("vulnerable_flagged", "recently bereaved, struggling to follow", "vulnerable", id="vulnerable"),
    pytest.param("deceased", "her son answered: she died in March", "deceased", id="deceased"),
]


@pytest.mark.parametrize(("disposition", "notes", "kind"), NEEDS_REVIEW)
async def test_an_outcome_that_needs_a_person_reaches_the_review_queue_and_the_desk_closes_it(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    temporal_client: Client,
    disposition: str,
    notes: str,
    kind: str,
) -> None:
    await queue_one_customer(stores, replica_url)
    priya = await start_available(http, "priya@rmc.example")
    session_id, user_id = await call_with_outcome(http, temporal_client, priya, disposition, notes)
    sam, cora = await login(http, "sam@rmc.example"), await login(http, "cora@rmc.example")

    # Supervisors read the queue; the item is there with the agent's notes (a complaint with the DISP deadlines).
    listed = await http.get("/api/v1/compliance/reviews", params={"kind": kind}, headers=sam)
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    assert (item["kind"], item["user_id"], item["call_session_id"], item["status"]) == (
        kind,
        user_id,
        session_id,
        "open",
    )
    assert item["notes"] == notes and item["disposition"] == disposition
    received = datetime.fromisoformat(item["created_at"])
    if kind == "complaint":
        assert datetime.fromisoformat(item["final_response_due_at"]) - received == timedelta(weeks=8)
        assert datetime.fromisoformat(item["acknowledge_due_at"]) - received == timedelta(days=5)
    else:
        assert item["final_response_due_at"] is None and item["acknowledge_due_at"] is None
    for other in {"complaint", "vulnerable", "deceased"} - {kind}:
        assert (await http.get("/api/v1/compliance/reviews", params={"kind": other}, headers=sam)).json()["items"] == []
    # ...but working it is the compliance desk's; agents do not even read it.
    assert (await http.post(f"/api/v1/compliance/reviews/{item['id']}/acknowledge", headers=sam)).status_code == 403
    assert (await http.get("/api/v1/compliance/reviews", headers=priya)).status_code == 403

    acknowledged = await http.post(f"/api/v1/compliance/reviews/{item['id']}/acknowledge", headers=cora)
    assert acknowledged.status_code == 200 and acknowledged.json()["status"] == "in_progress"
    cora_id = (await http.get("/api/v1/auth/me", headers=cora)).json()["id"]
    sam_id = (await http.get("/api/v1/auth/me", headers=sam)).json()["id"]
    to_sam = await http.post(
        f"/api/v1/compliance/reviews/{item['id']}/assign", json={"assignee_agent_id": sam_id}, headers=cora
    )
    assert to_sam.status_code == 422  # assigned to compliance users only
    assigned = await http.post(
        f"/api/v1/compliance/reviews/{item['id']}/assign", json={"assignee_agent_id": cora_id}, headers=cora
    )
    assert assigned.json()["assignee_agent_id"] == cora_id
    mine = await http.get(
        "/api/v1/compliance/reviews", params={"assignee_agent_id": cora_id, "status": "in_progress"}, headers=cora
    )
    assert [i["id"] for i in mine.json()["items"]] == [item["id"]]
    resolved = await http.post(
        f"/api/v1/compliance/reviews/{item['id']}/resolve",
        json={"resolution": "final response sent: no further calls, apology"},
        headers=cora,
    )
    assert resolved.status_code == 200 and resolved.json()["status"] == "closed"
    again = await http.post(f"/api/v1/compliance/reviews/{item['id']}/resolve", json={"resolution": "x"}, headers=cora)
    assert again.status_code == 409

    async with stores.postgres.connect() as conn:
        actions = (
            await conn.execute(
                text("SELECT action FROM audit_log WHERE subject_type = 'review' ORDER BY id"),
            )
        ).scalars()
        assert list(actions) == ["review.acknowledged", "review.assigned", "review.resolved"]
        # The finishing step retried: still one item for the session.
        async with stores.postgres.begin() as tx:
            await reviews.open_for_outcome(
                tx,
                disposition=Disposition(disposition),
                session_id=uuid.UUID(session_id),
                user_id=user_id,
                agent_id=None,
                at=received,
            )
        assert await conn.scalar(text("SELECT count(*) FROM review_items")) == 1


async def test_an_agents_vulnerable_flag_holds_in_the_gate_and_queues_until_the_desk_clears_it(
    http: httpx.AsyncClient,
    worker: Worker,
    stores: Stores,
    replica_url: str,
    replica_writer: AsyncEngine,
    temporal_client: Client,
) -> None:
    await queue_one_customer(stores, replica_url)
    priya = await start_available(http, "priya@rmc.example")
    session_id, user_id = await call_with_outcome(
        http, temporal_client, priya, "vulnerable_flagged", "recently bereaved, struggling to follow"
    )
    # The main app still says "active": only the dialler's flag makes them vulnerable.
    async with replica_writer.begin() as conn:
        await conn.execute(text("UPDATE users SET status = 'active' WHERE id = :u"), {"u": user_id})
    engine = queue_engine(stores)
    await recompute(stores, engine, [user_id])

    assert await engine.position(user_id) is not None  # requeued...
    assert await stores.redis.sismember(engine.keys.vulnerable, str(user_id))  # ...for trained agents only
    now = datetime.now(UTC)
    facts = (
        await compliance_facts.load(replica=stores.replica, postgres=stores.postgres, user_ids=[user_id], now=now)
    )[user_id]
    rules = gates.CallingRules.from_settings(stores.settings)
    untrained = gate.check(facts, channel=gate.Channel.VOICE, at=now, rules=rules, agent_trained_vulnerable=False)
    assert facts.vulnerable and gates.Rule.VULNERABLE in {c.rule for c in untrained.checks if not c.allowed}
    sam, cora = await login(http, "sam@rmc.example"), await login(http, "cora@rmc.example")
    [item] = (await http.get("/api/v1/compliance/reviews", params={"kind": "vulnerable"}, headers=sam)).json()["items"]
    assert item["call_session_id"] == session_id and item["notes"] == "recently bereaved, struggling to follow"
    flag = (await http.get(f"/api/v1/compliance/customers/{user_id}/vulnerable", headers=sam)).json()
    assert flag["vulnerable"] and flag["source"] == "agent"

    # Clearing is the desk's alone, with a reason, audited; the queues follow in the same request.
    body = {"vulnerable": False, "reason": "support needs resolved, confirmed with the customer"}
    assert (
        await http.put(f"/api/v1/compliance/customers/{user_id}/vulnerable", json=body, headers=sam)
    ).status_code == 403
    cleared = await http.put(f"/api/v1/compliance/customers/{user_id}/vulnerable", json=body, headers=cora)
    assert cleared.status_code == 200 and cleared.json()["vulnerable"] is False
    assert not await stores.redis.sismember(engine.keys.vulnerable, str(user_id))
    marked = await http.put(
        f"/api/v1/compliance/customers/{user_id}/vulnerable",
        json={"vulnerable": True, "reason": "told us of a new diagnosis by letter"},
        headers=cora,
    )
    assert marked.json()["vulnerable"] and marked.json()["source"] == "compliance"
    assert await stores.redis.sismember(engine.keys.vulnerable, str(user_id))
    async with stores.postgres.connect() as conn:
        actions = (
            await conn.execute(
                text("SELECT action FROM audit_log WHERE subject_type = 'customer' AND subject_id = :u ORDER BY id"),
                {"u": str(user_id)},
            )
        ).scalars()
        assert [a for a in actions if a.startswith("customer.vulnerable")] == [
            "customer.vulnerable_cleared",
            "customer.vulnerable_set",
        ]


async def _queued_customers(stores: Stores, replica_writer: AsyncEngine, n: int) -> list[tuple[int, str]]:
    """``n`` customers in the unsigned queue, each with a number of their own: (id, number as typed)."""
    engine = queue_engine(stores)
    ids = [
        int(str(u, "ascii") if isinstance(u, bytes) else str(u))
        for u in await stores.redis.zrange(engine.keys.queue("unsigned"), 0, -1)
    ]
    async with replica_writer.begin() as conn:
        rows = (
            await conn.execute(
                text("SELECT id, phone_number FROM users WHERE id IN :ids ORDER BY id").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": ids},
            )
        ).all()
    seen: dict[str, list[int]] = {}
    for r in rows:
        seen.setdefault(normalise_phone(r.phone_number).e164 or "", []).append(int(r.id))
    own = [(int(r.id), str(r.phone_number)) for r in rows if len(seen[normalise_phone(r.phone_number).e164 or ""]) == 1]
    assert len(own) >= n
    return own[:n]


async def test_a_listed_number_leaves_the_queues_at_once_and_removal_needs_a_reason(
    http: httpx.AsyncClient, stores: Stores, replica_url: str, replica_writer: AsyncEngine
) -> None:
    await queue_one_customer(stores, replica_url)
    [(user_id, typed)] = await _queued_customers(stores, replica_writer, 1)
    engine = queue_engine(stores)
    sam, tom = await login(http, "sam@rmc.example"), await login(http, "tom@rmc.example")
    body = {"phone": typed, "reason": "asked by letter not to be called again"}

    assert (await http.post("/api/v1/compliance/do-not-call", json=body, headers=tom)).status_code == 403
    added = await http.post("/api/v1/compliance/do-not-call", json=body, headers=sam)
    assert added.status_code == 200, added.text
    e164 = normalise_phone(typed).e164
    assert e164 is not None
    assert added.json()["entry"]["phone_e164"] == e164 and added.json()["customers_replaced"] == 1
    assert await engine.position(user_id) is None  # out of the queues in the same request
    now = datetime.now(UTC)
    facts = (
        await compliance_facts.load(replica=stores.replica, postgres=stores.postgres, user_ids=[user_id], now=now)
    )[user_id]
    rules = gates.CallingRules.from_settings(stores.settings)
    assert not gate.check(facts, channel=gate.Channel.VOICE, at=now, rules=rules).allowed
    again = await http.post("/api/v1/compliance/do-not-call", json=body, headers=sam)
    assert again.json()["changed"] is False
    found = await http.get("/api/v1/compliance/do-not-call", params={"number": e164[-6:]}, headers=sam)
    assert [e["phone_e164"] for e in found.json()["items"]] == [e164]

    bad = await http.post("/api/v1/compliance/do-not-call", json={"phone": "12345", "reason": "x"}, headers=sam)
    assert bad.status_code == 422
    terse = await http.post("/api/v1/compliance/do-not-call/remove", json={"phone": typed, "reason": "ok"}, headers=sam)
    assert terse.status_code == 409  # the customer asked: a word is not a reason
    removed = await http.post(
        "/api/v1/compliance/do-not-call/remove",
        json={"phone": typed, "reason": "customer rang to ask us to call about the claim again"},
        headers=sam,
    )
    assert removed.status_code == 200 and removed.json()["customers_replaced"] == 1
    position = await engine.position(user_id)
    assert position is not None and position[0] == "unsigned"
    async with stores.postgres.connect() as conn:
        actions = list(
            (
                await conn.execute(text("SELECT action FROM audit_log WHERE subject_type = 'do_not_call' ORDER BY id"))
            ).scalars()
        )
        details = await conn.scalar(
            text("SELECT details FROM audit_log WHERE action = 'dnc.removed'"),
        )
    assert actions == ["dnc.added", "dnc.removed"]
    assert details["listed_reason"] == "asked by letter not to be called again"


async def test_a_tps_file_is_streamed_in_reports_bad_lines_and_empties_the_queues_of_its_numbers(
    http: httpx.AsyncClient, stores: Stores, replica_url: str, replica_writer: AsyncEngine
) -> None:
    await queue_one_customer(stores, replica_url)
    (first, first_typed), (second, second_typed) = await _queued_customers(stores, replica_writer, 2)
    engine = queue_engine(stores)
    cora = await login(http, "cora@rmc.example")
    lines = ["Telephone Number,Date Added", f"{first_typed},2026-11-01", "not a number", "", "+44 7700 900999", "01"]
    lines.append(f'"{second_typed}",2026-11-02')
    file = "\r\n".join(lines).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(file), 7):  # small chunks: lines split across them
            yield file[at : at + 7]

    loaded = await http.post(
        "/api/v1/compliance/do-not-call/tps", content=chunks(), headers={**cora, "Content-Type": "text/csv"}
    )
    assert loaded.status_code == 200, loaded.text
    body = loaded.json()
    assert (body["loaded"], body["invalid_count"], body["customers_replaced"]) == (3, 2, 2)
    assert [i["line"] for i in body["invalid"]] == [3, 6]
    assert await engine.position(first) is None and await engine.position(second) is None
    listed = await http.get("/api/v1/compliance/do-not-call", params={"source": "tps"}, headers=cora)
    assert len(listed.json()["items"]) == 3
    reloaded = await http.post(
        "/api/v1/compliance/do-not-call/tps", content=file, headers={**cora, "Content-Type": "text/csv"}
    )
    assert (reloaded.json()["loaded"], reloaded.json()["already_listed"]) == (0, 3)


async def test_the_desk_closes_a_complainants_number_from_the_dialler_with_a_reason_in_one_request(
    http: httpx.AsyncClient, stores: Stores, replica_url: str, replica_writer: AsyncEngine
) -> None:
    await queue_one_customer(stores, replica_url)
    [(user_id, typed)] = await _queued_customers(stores, replica_writer, 1)
    async with stores.postgres.begin() as conn:
        review_id = await conn.scalar(
            text(
                "INSERT INTO review_items (kind, user_id, status, created_at)"
                " VALUES ('complaint', :u, 'open', now()) RETURNING id"
            ),
            {"u": user_id},
        )
    engine = queue_engine(stores)
    sam, cora = await login(http, "sam@rmc.example"), await login(http, "cora@rmc.example")
    path = f"/api/v1/compliance/reviews/{review_id}/close-customer"

    assert (await http.post(path, json={"reason": "complained about calls"}, headers=sam)).status_code == 403
    assert (await http.post(path, json={"reason": ""}, headers=cora)).status_code == 422  # a reason is required
    assert await engine.position(user_id) is not None
    closed = await http.post(path, json={"reason": "complained about calls: no more calls"}, headers=cora)

    assert closed.status_code == 200, closed.text
    e164 = normalise_phone(typed).e164
    assert closed.json()["entry"]["phone_e164"] == e164 and closed.json()["entry"]["source"] == "complaint"
    assert closed.json()["customers_replaced"] == 1
    assert await engine.position(user_id) is None  # out of the queues in the same request
    listed = await http.get("/api/v1/compliance/do-not-call", params={"source": "complaint"}, headers=cora)
    assert [e["phone_e164"] for e in listed.json()["items"]] == [e164]
    async with stores.postgres.connect() as conn:
        audit = (
            await conn.execute(
                text(
                    "SELECT action, subject_id, details FROM audit_log"
                    " WHERE action LIKE 'review.%' OR action LIKE 'dnc.%' ORDER BY id"
                )
            )
        ).all()
    assert [a.action for a in audit] == ["dnc.added", "review.customer_closed"]
    assert audit[1].subject_id == str(review_id) and audit[1].details["user_id"] == user_id
