"""The presence transition table, as a pure function."""

from __future__ import annotations

import itertools

import pytest

from dialler.agents.errors import InvalidPresenceReason, PresenceTransitionRefused
from dialler.agents.presence import TRANSITIONS, Initiator, PresenceState, agent_targets, transition

S = PresenceState
REASONS = ("lunch", "comfort", "training")


def move(current: S, target: S, reason: str | None = None, by: Initiator = Initiator.AGENT):  # type: ignore[no-untyped-def]
    return transition(current, target, reason, break_reasons=REASONS, by=by)


@pytest.mark.parametrize(
    ("current", "target"),
    [(S.OFFLINE, S.AVAILABLE), (S.AVAILABLE, S.OFFLINE), (S.BREAK, S.AVAILABLE), (S.BREAK, S.OFFLINE)],
)
def test_agent_moves_between_offline_available_and_break(current: S, target: S) -> None:
    assert move(current, target).changed


def test_break_needs_a_reason_from_the_configured_list() -> None:
    with pytest.raises(InvalidPresenceReason, match="lunch, comfort, training"):
        move(S.AVAILABLE, S.BREAK)
    with pytest.raises(InvalidPresenceReason):
        move(S.AVAILABLE, S.BREAK, "nap")
    with pytest.raises(InvalidPresenceReason, match="Only a break"):
        move(S.OFFLINE, S.AVAILABLE, "lunch")
    assert move(S.AVAILABLE, S.BREAK, "lunch").reason == "lunch"


def test_on_call_cannot_go_on_break() -> None:
    with pytest.raises(PresenceTransitionRefused, match="on a call") as refused:
        move(S.ON_CALL, S.BREAK, "lunch")
    assert refused.value.details == {"current": "on_call", "target": "break"}
    with pytest.raises(PresenceTransitionRefused):
        move(S.ON_CALL, S.BREAK, "lunch", by=Initiator.SYSTEM)


def test_only_the_system_reserves_and_only_an_available_agent() -> None:
    with pytest.raises(PresenceTransitionRefused, match="next call"):
        move(S.AVAILABLE, S.RESERVED)
    assert move(S.AVAILABLE, S.RESERVED, by=Initiator.SYSTEM).changed
    for current in (S.OFFLINE, S.BREAK, S.ON_CALL, S.WRAP_UP, S.RESERVED):
        with pytest.raises(PresenceTransitionRefused, match="Only an available agent"):
            move(current, S.RESERVED, by=Initiator.SYSTEM)


def test_the_call_cycle_is_driven_by_the_system() -> None:
    cycle = [S.AVAILABLE, S.RESERVED, S.ON_CALL, S.WRAP_UP, S.AVAILABLE]
    for current, target in itertools.pairwise(cycle):
        assert move(current, target, by=Initiator.SYSTEM).changed
        if current is not S.AVAILABLE or target is not S.RESERVED:
            with pytest.raises(PresenceTransitionRefused):
                move(current, target)  # the agent cannot click through a call


def test_agent_cannot_leave_a_call_state_by_hand() -> None:
    for current in (S.RESERVED, S.ON_CALL, S.WRAP_UP):
        assert agent_targets(current) == []
        for target in (S.AVAILABLE, S.OFFLINE):
            with pytest.raises(PresenceTransitionRefused):
                move(current, target)


def test_repeating_a_resting_state_is_a_no_op_but_repeating_a_call_state_is_refused() -> None:
    assert not move(S.AVAILABLE, S.AVAILABLE).changed
    assert not move(S.OFFLINE, S.OFFLINE).changed
    same_break = transition(S.BREAK, S.BREAK, "lunch", break_reasons=REASONS, current_reason="lunch")
    other_break = transition(S.BREAK, S.BREAK, "training", break_reasons=REASONS, current_reason="lunch")
    assert not same_break.changed and other_break.changed
    for state in (S.RESERVED, S.ON_CALL, S.WRAP_UP):
        with pytest.raises(PresenceTransitionRefused):
            move(state, state, by=Initiator.SYSTEM)


def test_every_pair_outside_the_table_is_refused_for_everyone() -> None:
    for current, target in itertools.product(S, S):
        if (current, target) in TRANSITIONS or (current is target and current in (S.OFFLINE, S.AVAILABLE)):
            continue
        reason = "lunch" if target is S.BREAK else None
        with pytest.raises(PresenceTransitionRefused):
            move(current, target, reason, by=Initiator.SYSTEM)
