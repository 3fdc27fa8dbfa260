"""Ofcom's 2-second rule read from the carrier's record, for an answered call the web process never
decided (it was down at the answer): the call is abandoned when no agent's phone was put through and
the customer stayed on the line past the allowance."""

from __future__ import annotations

import pytest

from dialler.calls.answered import abandoned_unseen


@pytest.mark.parametrize(
    ("put_through", "duration_s", "abandoned"),
    [
        (False, 4, True),  # Twilio's apology, nobody there: abandoned
        (False, 45, True),  # the information message played by the fallback: abandoned all the same
        (False, 2, False),  # hung up within the 2 s: not left waiting
        (False, None, False),  # the carrier has no length: never answered
        (True, 4, False),  # an agent took it
        (True, 600, False),
    ],
)
def test_an_answered_call_with_no_agent_past_the_allowance_is_abandoned(
    put_through: bool, duration_s: int | None, abandoned: bool
) -> None:
    assert abandoned_unseen(agent_put_through=put_through, duration_s=duration_s, allowance_s=2.0) is abandoned
