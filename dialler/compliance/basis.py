"""PECR reg. 21A: the basis on which each customer is called, recorded with every dial.

Marketing calls about claims-management services need the subscriber's prior consent. The dialler
makes none: it calls the firm's existing clients about their own claims, from the three queues that
hold nothing else (``dialler.queues.eligibility``) — a signature their claim needs, documents it is
waiting for, or the callback they booked. Each dial's decision record (``compliance_decisions.basis``)
says which, so that the basis of any call can be shown later.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CALL_BASIS", "call_basis"]

CALL_BASIS: Final[dict[str, str]] = {
    "unsigned": "service call to an existing client about their own claim: a signature it needs",
    "outstanding_requests": "service call to an existing client about their own claim: documents it awaits",
    "callbacks": "service call to an existing client: the callback they asked for",
}


def call_basis(queue: str) -> str:
    """The basis of a call offered from ``queue``; a queue with none is a bug (no call without one)."""
    try:
        return CALL_BASIS[queue]
    except KeyError:
        raise ValueError(f"no basis for calling from queue {queue!r}") from None
