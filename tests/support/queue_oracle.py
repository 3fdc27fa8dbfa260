"""The queues a rebuild must produce, computed independently of dialler.queues (plain SQL over the
contract's rules): the oracle of the rebuild tests and the explain-clock test."""

from __future__ import annotations

import phonenumbers
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Written independently of dialler.queues: the contract's rules as plain SQL.
EXPECTED = """
SELECT u.id, u.phone_number,
       CASE WHEN u.current_signature_file_id IS NULL THEN 'unsigned' ELSE 'outstanding_requests' END AS queue
FROM users u
WHERE u.deleted_at IS NULL AND u.is_enabled = 1 AND u.status IN ('active', 'vulnerable')
  AND EXISTS (SELECT 1 FROM claims c WHERE c.user_id = u.id AND c.deleted_at IS NULL
              AND c.status IN ('new', 'documents_required', 'in_progress', 'submitted_to_lender'))
  AND (u.current_signature_file_id IS NULL OR EXISTS (
        SELECT 1 FROM claim_requirements r JOIN claims c ON c.id = r.claim_id
        WHERE c.user_id = u.id AND c.deleted_at IS NULL
          AND c.status IN ('new', 'documents_required', 'in_progress', 'submitted_to_lender')
          AND r.deleted_at IS NULL AND r.status = 'PENDING'))
"""


def callable_uk(raw: str | None) -> str | None:
    """E.164 for a UK number, accepting Ofcom's drama range that the seed uses (phonenumbers rejects it)."""
    if not raw:
        return None
    try:
        number = phonenumbers.parse(raw, "GB")
    except phonenumbers.NumberParseException:
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    drama = e164.startswith("+447700900") and len(e164) == 13
    if not drama and not (phonenumbers.is_valid_number(number) and phonenumbers.region_code_for_number(number) == "GB"):
        return None
    return e164


async def expected_queues(replica: AsyncEngine) -> dict[str, dict[int, str]]:
    async with replica.connect() as conn:
        rows = (await conn.execute(text(EXPECTED))).all()
    queues: dict[str, dict[int, str]] = {"unsigned": {}, "outstanding_requests": {}}
    for user_id, phone, queue in rows:
        if (e164 := callable_uk(phone)) is not None:
            queues[queue][user_id] = e164
    return queues
