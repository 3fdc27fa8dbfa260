"""Domain errors of pacing. Each derives from one kind of :mod:`dialler.errors` (``api/errors.py``
maps the kind to HTTP: a ceiling above Ofcom's limit is a 422, a paused queue a 409)."""

from __future__ import annotations

from dialler.errors import Conflict, Invalid


class CeilingAboveOfcomLimit(Invalid):
    """A queue's abandoned-call ceiling asked above 3 %: refused, never capped."""

    code = "ceiling_above_ofcom_limit"


class ProgressivePaused(Conflict):
    """Every queue a progressive agent works has reached its abandoned-call ceiling: no progressive
    call is started until the rolling 24 h brings the rate back under it. The message is the reason
    the agent's screen shows; ``details.queues`` has each paused queue's rate and ceiling."""

    code = "progressive_paused"
