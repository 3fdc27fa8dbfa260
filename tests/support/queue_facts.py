"""Customer facts for the queue rules' tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dialler.queues.eligibility import CustomerFacts


def eligible_customer(**overrides: Any) -> CustomerFacts:
    """An unsigned, active, enabled customer with one active claim and a good mobile number, unless
    overridden."""
    base: dict[str, Any] = {
        "user_id": 7,
        "status": "active",
        "is_enabled": True,
        "deleted": False,
        "signed": False,
        "phone_raw": "07700 900123",
        "active_claims": 1,
        "pending_requirements": 0,
        "oldest_active_claim_at": datetime(2025, 1, 1, tzinfo=UTC),
    }
    return CustomerFacts(**{**base, **overrides})
