"""The rebuild's shortcuts give exactly the answers of the rules they shorten: ``decide_all`` (which
shares the gate's answer among customers without contact history) decides every customer as
``decide`` alone does, and the chase queues' fast score equals the score built from its fields."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta, timezone

from dialler.compliance.gate import ContactFacts
from dialler.compliance.gates import CallingRules
from dialler.queues.eligibility import CustomerFacts, QueueName
from dialler.queues.facts import DiallerFacts, LiveCallback
from dialler.queues.placement import decide, decide_all
from dialler.queues.scoring import _compose, _fields, queue_score

GRACE = timedelta(seconds=600)
PREPARE = timedelta(seconds=300)
STATUSES = ("active", "Active ", "vulnerable", "inactive", "deceased", "weird")
POSTCODES = (None, "", "EH1 1AA", "BT1 1AA", "SW1A 1AA", "ZE1 0AA", "??", "g2 1aa", "KW15 1AA")


def phone(i: int) -> str:
    return f"07700 900{i % 1000:03d}"


def population(rng: random.Random, now: datetime, n: int = 4_000) -> tuple[list[CustomerFacts], DiallerFacts]:
    customers = [
        CustomerFacts(
            user_id=uid,
            status=rng.choice(STATUSES),
            is_enabled=rng.random() > 0.05,
            deleted=rng.random() < 0.05,
            signed=rng.random() < 0.5,
            phone_raw=rng.choice((phone(uid), phone(uid), phone(uid), None, "junk", "+1 212 555 0100")),
            active_claims=rng.choice((0, 1, 2, 3)),
            pending_requirements=rng.choice((0, 0, 1, 4)),
            oldest_active_claim_at=rng.choice((None, now - timedelta(days=rng.randint(0, 4000)))),
            postcode=rng.choice(POSTCODES),
        )
        for uid in range(1, n + 1)
    ]
    # Contact history for some: customers, numbers (shared by other customers), abandoned calls.
    ago = [now - timedelta(minutes=m) for m in (5, 90, 600, 3000, 9000)]
    attempts = {uid: tuple(sorted(rng.sample(ago, rng.randint(1, 4)))) for uid in rng.sample(range(1, n + 1), n // 10)}
    numbers = {"+44" + phone(i)[1:].replace(" ", ""): tuple(rng.sample(ago, 2)) for i in rng.sample(range(1000), 60)}
    abandoned = {"+44" + phone(i)[1:].replace(" ", ""): rng.choice(ago) for i in rng.sample(range(1000), 40)}
    callbacks = {
        uid: LiveCallback(
            uid,
            now + timedelta(seconds=rng.choice((-60, 10, 200, 5000))),
            rng.choice(("scheduled", "due", "open")),
            rng.choice((None, 3)),
        )
        for uid in rng.sample(range(1, n + 1), n // 20)
    }
    known = DiallerFacts(
        attempts=attempts,
        attempts_total={uid: len(a) + rng.randint(0, 70) for uid, a in attempts.items()},
        abandoned_at=abandoned,
        do_not_call=frozenset("+44" + phone(i)[1:].replace(" ", "") for i in rng.sample(range(1000), 50)),
        opted_out=frozenset("+44" + phone(i)[1:].replace(" ", "") for i in rng.sample(range(1000), 50)),
        callbacks=callbacks,
        number_attempts=numbers,
        flagged_vulnerable=frozenset(rng.sample(range(1, n + 1), n // 30)),
        # calls under way to a few numbers: the shortcut must not share an answer with these
        number_busy_until={
            "+44" + phone(i)[1:].replace(" ", ""): now + timedelta(minutes=5) for i in range(7, 1000, 50)
        },
    )
    return customers, known


def test_decide_all_decides_each_customer_as_decide_alone_does() -> None:
    rng = random.Random(25)
    rules = CallingRules()
    # a weekday in hours, a Scottish-only bank holiday (St Andrew's Day 2026 is a Monday), a Sunday
    for now in (
        datetime(2026, 6, 10, 10, 0, tzinfo=UTC),
        datetime(2026, 11, 30, 10, 0, tzinfo=UTC),
        datetime(2026, 6, 14, 19, 59, tzinfo=UTC),
    ):
        customers, known = population(rng, now)
        together = decide_all(customers, known, now=now, rules=rules, callback_grace=GRACE, callback_prepare=PREPARE)
        alone = [
            decide(c, known, now=now, rules=rules, callback_grace=GRACE, callback_prepare=PREPARE) for c in customers
        ]
        assert together == alone
        # the population exercises the shortcut and the paths around it
        reasons = {d.reason for d in alone}
        assert {"unsigned", "outstanding_requirements", "do_not_call", "opted_out", "callback_booked"} <= reasons
        busy_until = (now + timedelta(minutes=5)).timestamp()  # a customer whose number is in a call waits
        assert any(d.entry is not None and d.entry.not_before == busy_until for d in alone)
        assert any(d.entry is not None and d.entry.not_before is not None for d in alone)


def test_the_shared_answer_key_covers_every_fact_the_gate_reads() -> None:
    # placement._gate_answer shares an answer between customers with no contact history who agree on
    # these facts; a new field of ContactFacts must be added to its key (or shown not to matter there).
    keyed = {"status", "deleted", "enabled", "postcode", "do_not_call", "opted_out", "booked_callback"}
    keyed |= {"flagged_vulnerable"}
    history = {"attempts", "number_attempts", "last_abandoned_at", "number_busy_until"}  # empty on the shortcut
    same_for_all = {"user_id", "phone_e164", "phone_problem", "versions"}  # not read by a voice check, or fixed
    assert {f.name for f in dataclasses.fields(ContactFacts)} == keyed | history | same_for_all


def test_the_fast_score_equals_the_score_built_from_its_fields() -> None:
    rng = random.Random(7)
    zones = (UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5)))
    for _ in range(20_000):
        queue = rng.choice((QueueName.UNSIGNED, QueueName.OUTSTANDING, "unsigned", "outstanding_requests"))
        claim = rng.choice(
            (None, datetime(1990, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
            + tuple(
                datetime(2000, 1, 1, tzinfo=UTC).astimezone(rng.choice(zones))
                + timedelta(seconds=rng.randint(-(10**6), 4 * 10**9))
                for _ in range(3)
            )
        )
        args = (rng.randint(0, 100), claim, rng.randint(0, 100), rng.choice((0, 1, 5, 10**6, 2**24 - 1, 2**24, 10**9)))
        fast = queue_score(
            queue, attempts_total=args[0], oldest_active_claim_at=args[1], pending_requirements=args[2], user_id=args[3]
        )
        assert fast == float(_compose(_fields(queue, *args, None)))
