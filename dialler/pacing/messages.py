"""What flows in and out of PacingWorkflow: queue names, counts, agent ids and the decision — never a
customer's name or number (Temporal keeps payloads in its history)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from dialler.pacing.predictive import Estimates

TICK_S: Final = 3.0
"""How often a queue's pacer reads the floor and dials: the setting's default (``pacing_tick_s``) and
the simulator's tick (``bench/pacing_sim.py``), so what the simulator measures is this cadence."""
MARGIN_EVERY_S: Final = 900
"""How often the governor adapts predictive's margin (``pacing_margin_every_s``; the simulator's too)."""


def pacing_workflow_id(queue: str) -> str:
    """One pacer per queue: the workflow id is the business key."""
    return f"pacing-{queue}"


@dataclass(frozen=True)
class PacingInput:
    queue: str
    tick_s: float = TICK_S
    activity_timeout_s: float = 20.0
    ticks_per_run: int = 400  # then continue-as-new, carrying the margin
    margin: float = 3.0  # predictive's safety margin (sd), adapted by the governor
    margin_every_s: int = MARGIN_EVERY_S
    margin_adapted_at: datetime | None = None
    started_by_agent_id: int | None = None


@dataclass(frozen=True)
class SnapshotInput:
    queue: str


@dataclass(frozen=True)
class PacingSnapshot:
    """The queue's floor as the pacer sees it, read by one activity each tick."""

    queue: str
    at: datetime
    mode: str  # the mode the supervisor asked for (PacingMode)
    max_ratio: float
    ceiling: float
    rate: float | None  # Ofcom's rolling 24 h abandoned rate (None: no live call yet)
    abandoned: int
    live_answered: int
    ready_agents: tuple[int, ...]  # available, phone heartbeat fresh, holding no customer; longest idle first
    in_flight: int  # the queue's calls ringing with no agent yet (predictive's pooled calls)
    ringing_for_s: tuple[float, ...] = ()
    wrapping_for_s: tuple[float, ...] = ()
    talking_for_s: tuple[float, ...] = ()
    estimates: Estimates = field(default_factory=lambda: Estimates(0.25, 10.0, 240.0, 25.0))
    recent_rate: float = 0.0  # the last hour's abandoned rate, for the margin
    recent_answered: int = 0


@dataclass(frozen=True)
class PacingDecision:
    """One tick's decision, the numbers behind it and why (the workflow's query; the board)."""

    queue: str
    at: datetime
    requested: str  # the mode the supervisor set
    governed: str  # the mode the governor allows now
    paused: bool
    reason: str
    ratio: float  # calls ringing per expected free agent after this tick
    calls: int  # calls placed this tick
    reserved_for: tuple[int, ...]  # progressive: the agents whose calls these are
    pooled: int  # predictive: calls bridged to whichever ready agent is free at the answer
    ready: int
    in_flight: int
    expected_free: float
    expected_answers: float
    margin: float
    max_ratio: float
    rate: float | None
    ceiling: float
    answer_probability: float


@dataclass(frozen=True)
class PlaceCallsInput:
    """Place this tick's calls: one reserved for each of ``agent_ids``, and ``pooled`` calls with no
    agent until one is claimed at the answer. ``key`` (workflow run and tick) makes a retry place none twice."""

    queue: str
    key: str
    agent_ids: tuple[int, ...] = ()
    pooled: int = 0


@dataclass(frozen=True)
class PlaceCallsResult:
    placed_for: tuple[int, ...] = ()  # agents a call was started for
    pooled: int = 0  # pooled calls started
    session_ids: tuple[str, ...] = ()
    reason: str | None = None  # why fewer were placed (nobody eligible, calling hours, ...)


@dataclass(frozen=True)
class PacingStatus:
    """The workflow's query: running or stopping, and the last decision."""

    queue: str
    running: bool
    decision: PacingDecision | None
    ticks: int
    last_placed: PlaceCallsResult | None = None
