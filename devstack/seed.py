"""A realistic, fast and deterministic data generator for the replica contract tables.

It plays the *main claims app's* part: the product's replica engine is read-only by construction
(:func:`dialler.db.engines.create_replica_engine`), so the generator builds its own writer engine
from the URL it is given. Use it for local development, tests and benchmarks only.

Determinism: every value comes from ``random.Random(seed)`` (never the global generator) and every
timestamp is an offset back from the fixed :data:`REFERENCE_TIME`, so one seed always produces the
same rows, whatever the clock, batch size or machine. Ids are explicit, ``1..N`` per table, and the
row counts are exact: ``claims == 3 * users`` and ``requirements == 4 * users``.

Speed: rows are plain tuples of ``int``/``str``/``None`` (timestamps are ready-made
``'YYYY-MM-DD HH:MM:SS'`` strings) generated batch by batch. Each batch becomes one multi-row
``INSERT ... VALUES`` on the raw aiomysql connection, with one transaction per table and unique
and foreign-key checks off for the session. The SQL text is built here rather than by
``cursor.executemany``: PyMySQL's per-value escaping dispatch cost more than generating the data
and than the server's own work. The next batch is generated in a worker thread while the server
inserts the current one, so Python and MariaDB use both cores.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import time
from array import array
from bisect import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from pymysql.constants import SERVER_STATUS
from pymysql.converters import escape_string
from sqlalchemy import make_url
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from dialler.replica.schema import create_replica_tables

# Generated timestamps count back from here, never from the clock (naive: the main app's
# DATETIME columns carry no zone).
REFERENCE_TIME = datetime(2026, 11, 1)
# The firm's oldest customers signed up in 2019.
_HISTORY_SECONDS = int((REFERENCE_TIME - datetime(2019, 1, 1)).total_seconds())

CLAIMS_PER_USER = 3
REQUIREMENTS_PER_USER = 4
# Rows per INSERT statement: 5,000 of the widest rows (users) make ~1.5 MB of SQL, well under the
# smallest common max_allowed_packet (MariaDB's 16 MiB default).
BATCH_ROWS = 5_000

ACTIVE_CLAIM_STATUSES = ("new", "documents_required", "in_progress", "submitted_to_lender")
CLOSED_CLAIM_STATUSES = ("won", "lost", "withdrawn", "closed")

Row = tuple[Any, ...]


@dataclass(frozen=True)
class SeedReport:
    """What one :func:`seed_replica` call wrote. Row counts are 0 when ``skipped``."""

    users: int
    claims: int
    requirements: int
    seconds: float
    skipped: bool


# ---------------------------------------------------------------------------------------------
# Vocabulary. Weighted lists are (value, weight) pairs, so the mix is visible where it is defined.
# ---------------------------------------------------------------------------------------------

_FIRST_NAMES = (
    "Oliver",
    "George",
    "Harry",
    "Jack",
    "Jacob",
    "Noah",
    "Charlie",
    "Thomas",
    "Oscar",
    "William",
    "James",
    "Leo",
    "Alfie",
    "Henry",
    "Joshua",
    "Freddie",
    "Archie",
    "Ethan",
    "Isaac",
    "Alexander",
    "Joseph",
    "Daniel",
    "Samuel",
    "Mohammed",
    "Muhammad",
    "Ryan",
    "Liam",
    "Connor",
    "Callum",
    "Lewis",
    "Kieran",
    "Jamie",
    "Craig",
    "Darren",
    "Lee",
    "Wayne",
    "Gary",
    "Paul",
    "Mark",
    "Stephen",
    "David",
    "Andrew",
    "Richard",
    "Peter",
    "John",
    "Michael",
    "Robert",
    "Christopher",
    "Ian",
    "Kevin",
    "Neil",
    "Simon",
    "Stuart",
    "Graham",
    "Keith",
    "Trevor",
    "Colin",
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Emily",
    "Sophie",
    "Grace",
    "Lily",
    "Chloe",
    "Ella",
    "Jessica",
    "Charlotte",
    "Mia",
    "Ruby",
    "Evie",
    "Poppy",
    "Freya",
    "Holly",
    "Megan",
    "Lauren",
    "Rebecca",
    "Hannah",
    "Amy",
    "Laura",
    "Emma",
    "Sarah",
    "Rachel",
    "Nicola",
    "Kelly",
    "Samantha",
    "Claire",
    "Lisa",
    "Michelle",
    "Joanne",
    "Karen",
    "Julie",
    "Susan",
    "Tracey",
    "Deborah",
    "Helen",
    "Jennifer",
    "Margaret",
    "Patricia",
    "Elizabeth",
    "Catherine",
    "Gemma",
    "Stacey",
    "Jade",
    "Leanne",
    "Aisha",
    "Fatima",
    "Priya",
    "Zoë",
    "Siân",
    "Seán",
    "Niamh",
    "Aoife",
    "Ciarán",
    "Rhys",
    "Dylan",
    "Gethin",
    "Bethan",
    "Eilidh",
    "Fraser",
    "Hamish",
    "Agnieszka",
    "Tomasz",
)

_LAST_NAMES: tuple[tuple[str, int], ...] = (
    ("Smith", 120),
    ("Jones", 90),
    ("Williams", 70),
    ("Taylor", 60),
    ("Brown", 60),
    ("Davies", 55),
    ("Evans", 45),
    ("Wilson", 45),
    ("Thomas", 40),
    ("Johnson", 40),
    ("Roberts", 38),
    ("Robinson", 35),
    ("Thompson", 35),
    ("Wright", 34),
    ("Walker", 33),
    ("White", 32),
    ("Edwards", 31),
    ("Hughes", 30),
    ("Green", 30),
    ("Hall", 29),
    ("Lewis", 29),
    ("Harris", 29),
    ("Clarke", 28),
    ("Patel", 28),
    ("Jackson", 27),
    ("Wood", 26),
    ("Turner", 26),
    ("Martin", 25),
    ("Cooper", 25),
    ("Hill", 25),
    ("Ward", 24),
    ("Morris", 24),
    ("Moore", 23),
    ("Clark", 23),
    ("Lee", 22),
    ("King", 22),
    ("Baker", 22),
    ("Harrison", 21),
    ("Morgan", 21),
    ("Allen", 20),
    ("James", 20),
    ("Scott", 20),
    ("Phillips", 19),
    ("Watson", 19),
    ("Davis", 18),
    ("Parker", 18),
    ("Price", 18),
    ("Bennett", 17),
    ("Young", 17),
    ("Griffiths", 17),
    ("Mitchell", 16),
    ("Kelly", 16),
    ("Cook", 16),
    ("Carter", 16),
    ("Richardson", 15),
    ("Bailey", 15),
    ("Collins", 15),
    ("Bell", 15),
    ("Shaw", 14),
    ("Murphy", 14),
    ("Miller", 14),
    ("Cox", 14),
    ("Richards", 13),
    ("Khan", 13),
    ("Marshall", 13),
    ("Anderson", 13),
    ("Simpson", 12),
    ("Ellis", 12),
    ("Adams", 12),
    ("Singh", 12),
    ("Begum", 11),
    ("Wilkinson", 11),
    ("Foster", 11),
    ("Chapman", 11),
    ("Powell", 10),
    ("Webb", 10),
    ("Rogers", 10),
    ("Gray", 10),
    ("Mason", 10),
    ("Ali", 10),
    ("Hunt", 9),
    ("Hussain", 9),
    ("Campbell", 9),
    ("Matthews", 9),
    ("Owen", 9),
    ("Palmer", 8),
    ("Holmes", 8),
    ("Mills", 8),
    ("Barnes", 8),
    ("Knight", 8),
    ("Lloyd", 8),
    ("Butler", 7),
    ("Russell", 7),
    ("Barker", 7),
    ("Fisher", 7),
    ("Stevens", 7),
    ("Jenkins", 7),
    ("Murray", 6),
    ("Dixon", 6),
    ("Harvey", 6),
    ("Ahmed", 6),
    ("Kaur", 5),
    ("McDonald", 5),
    ("MacKenzie", 4),
    ("Nowak", 3),
    ("Kowalski", 2),
    # Apostrophes, hyphens and accents: the main app stores names as typed.
    ("O'Brien", 5),
    ("O'Connor", 4),
    ("O'Neill", 3),
    ("Smith-Jones", 2),
    ("Lloyd-Davies", 1),
    ("Ó Súilleabháin", 1),
)

# Emails use domains reserved for documentation (RFC 2606), so the demo can never mail a real person.
_EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com", "post.example.org")

# Postcode areas, weighted roughly by population so the big cities dominate as they do in reality.
_POSTCODE_AREAS: tuple[tuple[str, int], ...] = (
    ("B", 30),
    ("M", 30),
    ("L", 20),
    ("LS", 20),
    ("S", 18),
    ("G", 20),
    ("EH", 12),
    ("CF", 10),
    ("BT", 12),
    ("NE", 14),
    ("BS", 12),
    ("NG", 12),
    ("LE", 10),
    ("CV", 9),
    ("SW", 16),
    ("SE", 18),
    ("E", 16),
    ("N", 12),
    ("W", 10),
    ("NW", 10),
    ("EC", 2),
    ("WC", 1),
    ("OL", 6),
    ("BL", 6),
    ("WN", 6),
    ("PR", 6),
    ("BB", 6),
    ("BD", 8),
    ("HD", 5),
    ("WF", 6),
    ("DN", 8),
    ("HU", 6),
    ("YO", 5),
    ("SR", 5),
    ("DH", 4),
    ("TS", 8),
    ("CH", 6),
    ("WA", 6),
    ("ST", 8),
    ("WV", 6),
    ("WS", 6),
    ("DY", 6),
    ("DE", 8),
    ("NN", 6),
    ("MK", 5),
    ("OX", 5),
    ("RG", 6),
    ("SO", 6),
    ("PO", 6),
    ("BN", 6),
    ("CT", 5),
    ("ME", 6),
    ("TN", 5),
    ("CM", 6),
    ("CO", 4),
    ("IP", 4),
    ("NR", 5),
    ("PE", 7),
    ("CB", 4),
    ("LU", 4),
    ("SG", 4),
    ("HP", 3),
    ("GU", 5),
    ("KT", 4),
    ("CR", 4),
    ("RM", 5),
    ("IG", 4),
    ("EN", 3),
    ("HA", 3),
    ("UB", 3),
    ("EX", 5),
    ("PL", 5),
    ("TR", 3),
    ("GL", 5),
    ("NP", 5),
    ("SA", 6),
    ("LL", 4),
    ("AB", 5),
    ("DD", 4),
    ("KY", 4),
    ("FK", 3),
    ("PA", 4),
    ("KA", 4),
    ("IV", 2),
)
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # Royal Mail never uses C I K M O V in the inward code

# Claim types as in the contract's comments, each with the lenders a claim of that type is against.
_CLAIM_TYPES: tuple[tuple[str, int], ...] = (
    ("motor_finance", 45),
    ("irresponsible_lending", 30),
    ("packaged_bank_account", 15),
    ("plevin", 10),
)
_LENDERS: dict[str, tuple[tuple[str, int], ...]] = {
    "motor_finance": (
        ("Black Horse", 20),
        ("Close Brothers", 12),
        ("MotoNovo", 12),
        ("Santander Consumer", 10),
        ("Blue Motor Finance", 8),
        ("Moneybarn", 8),
        ("Startline Motor Finance", 5),
        ("Oodle Car Finance", 5),
        ("Advantage Finance", 4),
        ("First Response Finance", 4),
        ("BMW Financial Services", 4),
        ("Volkswagen Financial Services", 5),
        ("Ford Credit", 4),
        ("RCI Financial Services", 3),
        ("Hyundai Capital UK", 2),
        ("Mercedes-Benz Financial Services", 3),
        ("Northridge Finance", 2),
        ("Billing Finance", 1),
    ),
    "irresponsible_lending": (
        ("Provident", 12),
        ("Vanquis", 14),
        ("118 118 Money", 8),
        ("Amigo", 10),
        ("Lending Stream", 6),
        ("Satsuma", 6),
        ("QuickQuid", 6),
        ("Wonga", 5),
        ("Sunny", 3),
        ("Everyday Loans", 4),
        ("Morses Club", 4),
        ("Aqua", 5),
        ("Capital One", 5),
        ("Marbles", 3),
        ("Fluid", 2),
        ("Oakam", 2),
        ("Drafty", 2),
        ("Cash Converters", 2),
        ("Brighthouse", 3),
        ("Very", 4),
    ),
    "plevin": (
        ("Lloyds", 16),
        ("Barclays", 14),
        ("NatWest", 12),
        ("HSBC", 12),
        ("Halifax", 10),
        ("MBNA", 8),
        ("Santander", 8),
        ("Bank of Scotland", 5),
        ("Royal Bank of Scotland", 5),
        ("Barclaycard", 6),
        ("Capital One", 4),
        ("Egg", 2),
        ("TSB", 4),
        ("Co-operative Bank", 2),
        ("Virgin Money", 2),
    ),
    "packaged_bank_account": (
        ("Lloyds", 18),
        ("Barclays", 15),
        ("NatWest", 14),
        ("HSBC", 12),
        ("Halifax", 12),
        ("Nationwide", 8),
        ("Santander", 7),
        ("TSB", 5),
        ("Royal Bank of Scotland", 5),
        ("Bank of Scotland", 4),
        ("Co-operative Bank", 3),
        ("Yorkshire Bank", 2),
        ("Clydesdale Bank", 2),
        ("Ulster Bank", 2),
        ("Metro Bank", 1),
    ),
}

# Which documents a claim of each type typically needs.
_REQUIREMENT_TYPES: dict[str, tuple[tuple[str, int], ...]] = {
    "motor_finance": (
        ("finance_agreement", 30),
        ("id_document", 25),
        ("proof_of_address", 20),
        ("questionnaire", 15),
        ("bank_statement", 10),
    ),
    "irresponsible_lending": (
        ("bank_statement", 35),
        ("questionnaire", 25),
        ("id_document", 20),
        ("proof_of_address", 15),
        ("finance_agreement", 5),
    ),
    "plevin": (
        ("questionnaire", 35),
        ("id_document", 25),
        ("proof_of_address", 20),
        ("bank_statement", 15),
        ("finance_agreement", 5),
    ),
    "packaged_bank_account": (
        ("bank_statement", 40),
        ("questionnaire", 25),
        ("id_document", 20),
        ("proof_of_address", 15),
    ),
}

# What the agent reads out: why a PENDING document is needed, or why one was REJECTED.
_PENDING_REASONS: dict[str, tuple[str, ...]] = {
    "id_document": (
        "Photo ID needed: passport or driving licence",
        "We need photo ID before the lender will discuss the claim",
    ),
    "proof_of_address": (
        "Proof of address dated within the last 3 months (utility bill or council tax)",
        "Proof of the address you lived at when the agreement started",
    ),
    "bank_statement": (
        "Bank statements covering the start of the loan are needed",
        "3 months of bank statements from before the agreement",
    ),
    "finance_agreement": (
        "Copy of the finance agreement, or the agreement number",
        "Vehicle registration and agreement start date needed",
    ),
    "questionnaire": (
        "Affordability questionnaire not yet completed",
        "Claim questionnaire about how the product was sold is outstanding",
    ),
}
_REJECTED_REASONS: dict[str, tuple[str, ...]] = {
    "id_document": (
        "Photo is blurred, please send a clearer picture",
        "Driving licence has expired",
        "Both sides of the driving licence are needed",
        "Name on the ID does not match the claim",
    ),
    "proof_of_address": (
        "Document is older than 3 months",
        "Address does not match the one on the claim",
        "Mobile phone bills are not accepted as proof of address",
    ),
    "bank_statement": (
        "Bank statement must show all pages",
        "Statement does not cover the loan period",
        "Account holder name is not visible",
        "Screenshots are not accepted, please send the PDF statement",
    ),
    "finance_agreement": (
        "Agreement is not signed",
        "Agreement is for a different vehicle",
        "Pages 2 and 3 of the agreement are missing",
    ),
    "questionnaire": (
        "Questionnaire incomplete: income section missing",
        "Answers conflict with the lender's records",
    ),
}


# ---------------------------------------------------------------------------------------------
# Phone numbers. Every well-formed number is in an Ofcom drama range (07700 900xxx, 0161 496 0xxx,
# 020 7946 0xxx, ...): those are reserved for fiction and never allocated, so the demo can never
# ring a real person. The mobile range has only 1,000 numbers, so numbers repeat across customers.
# ---------------------------------------------------------------------------------------------


def _mobile_formats(d: str) -> tuple[tuple[str, int], ...]:
    return (
        (f"07700 900{d}", 36),
        (f"07700900{d}", 20),
        (f"+447700900{d}", 15),
        (f"447700900{d}", 5),
        (f"+44 7700 900{d}", 5),
        (f"+44 (0)7700 900{d}", 2),
        (f"07700-900-{d}", 2),
        (f"7700900{d}", 1),  # a spreadsheet ate the leading zero
    )


# Area code and the local number's leading digits, grouped as people write them.
_LANDLINE_RANGES = (
    ("0161", "496 0"),
    ("0113", "496 0"),
    ("0114", "496 0"),
    ("0115", "496 0"),
    ("0116", "496 0"),
    ("0117", "496 0"),
    ("0118", "496 0"),
    ("0121", "496 0"),
    ("0131", "496 0"),
    ("0141", "496 0"),
    ("0151", "496 0"),
    ("0191", "498 0"),
    ("020", "7946 0"),
    ("029", "2018 0"),
    ("028", "9649 6"),
)

# About 3% of customers typed something no dialler can use.
_JUNK_PHONES: tuple[str | None, ...] = (
    "12345",
    "n/a",
    "",
    None,
    "none",
    "0",
    "07700 9001",
    "000000000000",
    "tbc",
    "call after 6pm",
)


def _landline(area: str, exchange: str, d: str, style: int) -> str:
    if style == 0:
        return f"{area} {exchange}{d}"
    if style == 1:
        return f"({area}) {exchange}{d}"
    if style == 2:
        return f"{area}{exchange}{d}".replace(" ", "")
    return f"+44 {area[1:]} {exchange}{d}"


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


class _Weighted:
    """A fixed weighted choice: cumulative weights and one ``random()`` per pick, as
    ``Random.choices`` does, without its per-call overhead."""

    __slots__ = ("values", "cum", "total")

    def __init__(self, pairs: Sequence[tuple[Any, int]]) -> None:
        self.values = tuple(v for v, _ in pairs)
        self.cum = tuple(itertools.accumulate(w for _, w in pairs))
        self.total = self.cum[-1]

    def pick(self, rand: Callable[[], float]) -> Any:
        return self.values[bisect(self.cum, rand() * self.total)]


_DAY = 86_400


@cache
def _calendar() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``'YYYY-MM-DD'`` for each day back from REFERENCE_TIME, and ``' HH:MM:SS'`` for each second of
    a day: two lookups make a timestamp, far cheaper than datetime arithmetic and formatting.
    Built on first use (~0.1 s), never at import."""
    start = REFERENCE_TIME.date()
    days = tuple((start - timedelta(days=n)).isoformat() for n in range(100 * 366))
    times = tuple(f" {s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(_DAY))
    return days, times


def _email_part(name: str) -> str:
    return "".join(c for c in name.lower() if c.isascii() and c.isalpha()) or "customer"


def _multinomial_counts(rng: random.Random, items: int, owners: int) -> array[int]:
    """Spread exactly ``items`` over ``owners`` uniformly: about Poisson(items/owners) each, so a few
    customers have no claim and a few have many, while the total stays exact."""
    counts = array("q", bytes(8 * owners))
    rand = rng.random
    for _ in range(items):
        counts[int(rand() * owners)] += 1
    return counts


class _Dataset:
    """Generates the three tables in id order.

    Later tables depend on earlier ones (a claim is opened after its customer signed up; a closed
    claim has no live paperwork), so each table keeps a few compact per-row facts in arrays for the
    next one: about 10 bytes per row instead of the rows themselves, which keeps 10x runs small.
    Each table draws from its own ``Random`` derived from the seed, so no table's values depend on
    how the others are batched.
    """

    def __init__(self, users: int, seed: int) -> None:
        root = random.Random(seed)
        self.users_n = users
        self.claims_n = users * CLAIMS_PER_USER
        self.requirements_n = users * REQUIREMENTS_PER_USER
        self._rngs = [random.Random(root.getrandbits(64)) for _ in range(3)]
        self._days, self._times = _calendar()
        self._user_age = array("q")  # seconds between sign-up and REFERENCE_TIME
        self._user_signed = bytearray()
        self._claim_age = array("q")
        self._claim_type = bytearray()  # index into _CLAIM_TYPES
        self._claim_active = bytearray()

    def _ts(self, seconds_ago: int) -> str:
        """The timestamp ``seconds_ago`` before REFERENCE_TIME. Offsets below are drawn as
        ``1 + int(parent_age * rand())``, i.e. in ``[1, parent_age]``: strictly before the reference
        and never before the parent row (sign-up before claim before requirement)."""
        days_back, second = divmod(-seconds_ago, _DAY)
        return self._days[-days_back] + self._times[second]

    # -- users ----------------------------------------------------------------------------------

    def users(self) -> Iterator[Row]:
        rand = self._rngs[0].random
        ts, days = self._ts, self._days
        last_name = _Weighted(_LAST_NAMES).pick
        first_names = _FIRST_NAMES
        first_n = len(first_names)
        email_parts = {n: _email_part(n) for n in (*_FIRST_NAMES, *(n for n, _ in _LAST_NAMES))}
        phone = _PhoneMaker(rand)
        postcode = _PostcodeMaker(rand)
        domains = _EMAIL_DOMAINS
        for user_id in range(1, self.users_n + 1):
            first = first_names[int(rand() * first_n)]
            last = last_name(rand)
            # Sign-ups skew recent: the firm has grown.
            age = 3_600 + int((_HISTORY_SECONDS - 3_600) * rand() ** 1.6)
            updated = 1 + int(age * rand())
            # Soft-deleting a row touches updated_at too.
            deleted = ts(updated) if rand() < 0.02 else None
            last_login = None if rand() < 0.2 else ts(1 + int(age * rand()))

            r = rand()
            if r < 0.01:
                status, enabled = "deceased", int(rand() < 0.3)
            elif r < 0.04:
                status, enabled = "vulnerable", 1
            elif r < 0.10:
                status, enabled = "inactive", int(rand() < 0.5)
            else:
                status, enabled = "active", int(rand() >= 0.015)

            # About a third have not signed: the unsigned queue exists because of them.
            signed = rand() >= 0.34
            signature = user_id * 4 + int(rand() * 4) if signed else None

            # Ages 18-85, peaking in the fifties like the firm's book of claims.
            dob = None if rand() < 0.015 else days[int(365.25 * (18 + 67 * (rand() + rand()) / 2))]
            if rand() < 0.06:
                email = None
            else:
                f, s, n = email_parts[first], email_parts[last], int(rand() * 100)
                local = (f"{f}.{s}", f"{f}.{s}{n}", f"{f[0]}{s}{n}", f"{f}{s}{1950 + n % 56}", f"{f}_{s}")
                email = f"{local[int(rand() * 5)]}@{domains[int(rand() * len(domains))]}"

            self._user_age.append(age)
            self._user_signed.append(signed)
            yield (
                user_id,
                first,
                last,
                email,
                phone(),
                dob,
                postcode(),
                signature,
                status,
                enabled,
                last_login,
                ts(age),
                deleted or ts(updated),
                deleted,
            )

    # -- claims ---------------------------------------------------------------------------------

    def claims(self) -> Iterator[Row]:
        rng = self._rngs[1]
        rand = rng.random
        ts = self._ts
        per_user = _multinomial_counts(rng, self.claims_n, self.users_n)
        claim_type = _Weighted([((i, name), w) for i, (name, w) in enumerate(_CLAIM_TYPES)]).pick
        lender_by_type = [_Weighted(_LENDERS[name]).pick for name, _ in _CLAIM_TYPES]
        # No lender is approached without a signature, so unsigned customers' claims are early-stage.
        active_signed = _Weighted(
            (("new", 10), ("documents_required", 30), ("in_progress", 35), ("submitted_to_lender", 25))
        ).pick
        active_unsigned = _Weighted((("new", 45), ("documents_required", 40), ("in_progress", 15))).pick
        closed = _Weighted((("won", 35), ("lost", 25), ("withdrawn", 25), ("closed", 15))).pick

        claim_id = 0
        for user_index, count in enumerate(per_user):
            if not count:
                continue
            user_age = self._user_age[user_index]
            signed = self._user_signed[user_index]
            for _ in range(count):
                claim_id += 1
                type_index, type_name = claim_type(rand)
                age = 1 + int(user_age * rand())
                # Older claims of signed customers have had time to reach an outcome.
                is_active = rand() >= (0.2 + 0.6 * age / _HISTORY_SECONDS if signed else 0.12)
                if not is_active:
                    status = closed(rand)
                elif signed:
                    status = active_signed(rand)
                else:
                    status = active_unsigned(rand)
                updated = 1 + int(age * rand())
                deleted = ts(updated) if rand() < 0.02 else None

                self._claim_age.append(age)
                self._claim_type.append(type_index)
                self._claim_active.append(is_active)
                yield (
                    claim_id,
                    user_index + 1,
                    lender_by_type[type_index](rand),
                    type_name,
                    status,
                    ts(age),
                    deleted or ts(updated),
                    deleted,
                )

    # -- requirements ---------------------------------------------------------------------------

    def requirements(self) -> Iterator[Row]:
        rng = self._rngs[2]
        rand = rng.random
        ts = self._ts
        per_claim = _multinomial_counts(rng, self.requirements_n, self.claims_n)
        kinds_by_claim_type = [_Weighted(_REQUIREMENT_TYPES[name]).pick for name, _ in _CLAIM_TYPES]
        on_active = _Weighted((("PENDING", 45), ("COMPLETED", 38), ("REJECTED", 9), ("CANCELLED", 8))).pick
        # Closed claims should have no live paperwork, but a few stale PENDING rows survive, as
        # they do in the real database: queue rules must check the claim's status too.
        on_closed = _Weighted((("COMPLETED", 70), ("CANCELLED", 24), ("REJECTED", 4), ("PENDING", 2))).pick

        requirement_id = 0
        for claim_index, count in enumerate(per_claim):
            if not count:
                continue
            claim_age = self._claim_age[claim_index]
            kind_of = kinds_by_claim_type[self._claim_type[claim_index]]
            status_of = on_active if self._claim_active[claim_index] else on_closed
            for _ in range(count):
                requirement_id += 1
                kind = kind_of(rand)
                status = status_of(rand)
                if status == "PENDING":
                    options = _PENDING_REASONS[kind]
                    reason: str | None = options[int(rand() * len(options))]
                elif status == "REJECTED":
                    options = _REJECTED_REASONS[kind]
                    reason = options[int(rand() * len(options))]
                else:
                    reason = None
                age = 1 + int(claim_age * rand())
                updated = 1 + int(age * rand())
                deleted = ts(updated) if rand() < 0.02 else None
                yield (
                    requirement_id,
                    claim_index + 1,
                    kind,
                    status,
                    reason,
                    ts(age),
                    deleted or ts(updated),
                    deleted,
                )


class _PhoneMaker:
    """Phone numbers as customers type them (see the Ofcom note above)."""

    def __init__(self, rand: Callable[[], float]) -> None:
        self._rand = rand
        self._mobiles = [_Weighted(_mobile_formats(f"{d:03d}")).pick for d in range(1000)]
        self._landline_style = _Weighted(((0, 6), (1, 2), (2, 2), (3, 1))).pick

    def __call__(self) -> str | None:
        rand = self._rand
        r = rand()
        if r < 0.03:
            return _JUNK_PHONES[int(rand() * len(_JUNK_PHONES))]
        if r < 0.15:
            area, exchange = _LANDLINE_RANGES[int(rand() * len(_LANDLINE_RANGES))]
            return _landline(area, exchange, f"{int(rand() * 1000):03d}", self._landline_style(rand))
        return self._mobiles[int(rand() * 1000)](rand)


class _PostcodeMaker:
    """UK-shaped postcodes ("M14 5TQ"); ~2% missing and ~4% typed loosely, as customers do."""

    def __init__(self, rand: Callable[[], float]) -> None:
        self._rand = rand
        self._area = _Weighted(_POSTCODE_AREAS).pick

    def __call__(self) -> str | None:
        rand = self._rand
        r = rand()
        if r < 0.02:
            return None
        letters = _INWARD_LETTERS
        code = (
            f"{self._area(rand)}{1 + int(rand() * 20)} {int(rand() * 10)}"
            f"{letters[int(rand() * 20)]}{letters[int(rand() * 20)]}"
        )
        if r < 0.04:
            return code.replace(" ", "")
        if r < 0.06:
            return code.lower()
        return code


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

_COLUMNS = {
    "users": (
        "id, first_name, last_name, email_address, phone_number, date_of_birth, postcode, "
        "current_signature_file_id, status, is_enabled, last_login, created_at, updated_at, deleted_at"
    ),
    "claims": "id, user_id, lender, type, status, created_at, updated_at, deleted_at",
    "claim_requirements": "id, claim_id, type, status, reason, created_at, updated_at, deleted_at",
}

# SQL text is built with one f-string per row instead of escaping every value: at this volume
# per-value escaping costs more than generating the data. Columns fall in three groups:
# - numbers, formatted directly;
# - strings built here only from digits, ASCII letters and "@._-: " (timestamps, dates, e-mails,
#   postcodes), which need no escaping and are just quoted;
# - everything else (names, lenders, phones, reasons, statuses), escaped once per distinct value
#   and memoised: these repeat a lot, so escaping is effectively free.
_SPECIAL = re.compile(r"[\0\\\n\r\x1a'\"]")


class _Literals(dict[str | None, str]):
    """Memo of value -> SQL literal; ``None`` -> ``NULL``. Escapes like PyMySQL: backslash escapes,
    or doubled quotes when the server runs with NO_BACKSLASH_ESCAPES."""

    def __init__(self, no_backslash_escapes: bool) -> None:
        super().__init__({None: "NULL"})
        self._no_backslash_escapes = no_backslash_escapes

    def __missing__(self, value: str) -> str:
        if len(self) > 200_000:  # only free text lands here, but keep the memo bounded regardless
            self.clear()
            self[None] = "NULL"
        if self._no_backslash_escapes:
            escaped = value.replace("'", "''")
        else:
            escaped = escape_string(value) if _SPECIAL.search(value) else value
        literal = self[value] = f"'{escaped}'"
        return literal


def _q(value: str | None) -> str:
    """Quote a string that is known to need no escaping (see above); ``None`` -> ``NULL``."""
    return "NULL" if value is None else f"'{value}'"


def _n(value: int | None) -> str:
    return "NULL" if value is None else str(value)


def _encoder(table: str, no_backslash_escapes: bool) -> Callable[[Row], str]:
    lit = _Literals(no_backslash_escapes)
    if table == "users":

        def users(r: Row) -> str:
            return (
                f"({r[0]},{lit[r[1]]},{lit[r[2]]},{_q(r[3])},{lit[r[4]]},{_q(r[5])},{_q(r[6])},"
                f"{_n(r[7])},{lit[r[8]]},{r[9]},{_q(r[10])},'{r[11]}','{r[12]}',{_q(r[13])})"
            )

        return users

    # claims and claim_requirements share a layout: id, parent id, three text columns, timestamps.
    def child(r: Row) -> str:
        return f"({r[0]},{r[1]},{lit[r[2]]},{lit[r[3]]},{lit[r[4]]},'{r[5]}','{r[6]}',{_q(r[7])})"

    return child


async def _load(driver: Any, table: str, rows: Iterator[Row]) -> int:
    """Insert ``rows`` into ``table`` in one transaction on the raw aiomysql connection.

    On failure there is no explicit rollback: the connection may be mid-statement, and closing it
    (the engine uses NullPool) makes the server roll the transaction back anyway.
    """
    encode = _encoder(table, bool(driver.server_status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES))
    prefix = f"INSERT INTO {table} ({_COLUMNS[table]}) VALUES "

    def next_statement() -> tuple[int, str] | None:
        batch = list(itertools.islice(rows, BATCH_ROWS))
        return (len(batch), prefix + ",".join(map(encode, batch))) if batch else None

    written = 0
    await driver.begin()
    async with driver.cursor() as cursor:
        statement = await asyncio.to_thread(next_statement)
        while statement is not None:
            # Build the next statement in a thread while the server inserts this one, so Python
            # and the database work at the same time. A TaskGroup cancels one if the other fails.
            async with asyncio.TaskGroup() as group:
                group.create_task(cursor.execute(statement[1]))
                following = group.create_task(asyncio.to_thread(next_statement))
            written += statement[0]
            statement = following.result()
    await driver.commit()
    return written


def _server_url(url: URL) -> URL:
    # URL.set() treats None as "unchanged", so build the server-level URL afresh.
    return URL.create(url.drivername, url.username, url.password, url.host, url.port, database=None, query=url.query)


async def _ensure_database(url: URL) -> None:
    if not url.database:
        raise ValueError("the URL must name a database, e.g. mysql+aiomysql://root@127.0.0.1/claims_app")
    name = url.database.replace("`", "``")
    server = create_async_engine(_server_url(url), poolclass=NullPool)
    try:
        async with server.connect() as conn:
            await conn.exec_driver_sql(
                f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
    finally:
        await server.dispose()


async def _prepare(conn: AsyncConnection, only_if_empty: bool) -> bool:
    """Create the tables; return False when seeding must be skipped."""
    await create_replica_tables(conn)
    has_rows = (await conn.exec_driver_sql("SELECT EXISTS (SELECT 1 FROM users)")).scalar()
    if has_rows and only_if_empty:
        await conn.rollback()
        return False
    if has_rows:
        for table in ("claim_requirements", "claims", "users"):
            await conn.exec_driver_sql(f"TRUNCATE TABLE {table}")
    # A fresh load of generated ids cannot violate uniqueness, and the contract has no foreign
    # keys to check: skip the per-row checks.
    await conn.exec_driver_sql("SET SESSION unique_checks = 0, foreign_key_checks = 0")
    await conn.commit()
    return True


async def seed_replica(url: str, *, users: int = 50_000, seed: int = 42, only_if_empty: bool = True) -> SeedReport:
    """Create the database and contract tables if missing and fill them with generated customers.

    ``url`` is a writer URL (``mysql+aiomysql://user@host:port/database``). ``users`` customers get
    exactly ``3 * users`` claims and ``4 * users`` requirements, with ids ``1..N``. With
    ``only_if_empty`` (the default) nothing is written when ``users`` already has rows and the report
    says ``skipped``; without it the three tables are emptied first, so the result is always exactly
    the generated data set.
    """
    if users < 0:
        raise ValueError("users must be >= 0")
    started = time.perf_counter()
    parsed = make_url(url)
    await _ensure_database(parsed)
    engine = create_async_engine(parsed, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            if not await _prepare(conn, only_if_empty):
                return SeedReport(0, 0, 0, time.perf_counter() - started, skipped=True)
            driver = (await conn.get_raw_connection()).driver_connection
            data = _Dataset(users, seed)
            users_written = await _load(driver, "users", data.users())
            claims_written = await _load(driver, "claims", data.claims())
            requirements_written = await _load(driver, "claim_requirements", data.requirements())
    finally:
        await engine.dispose()
    return SeedReport(
        users=users_written,
        claims=claims_written,
        requirements=requirements_written,
        seconds=time.perf_counter() - started,
        skipped=False,
    )
