"""The pacing simulator's short run: the product's own pacing functions on a small floor for two
measured days. Predictive must beat progressive on talk time without any 24 h window going over the
ceiling; the full table (10,000 agent-hours per configuration) is `docs/PACING.md`."""

from __future__ import annotations

from bench.pacing_sim import Config, simulate
from dialler.pacing.predictive import PacingMode


def floor(mode: PacingMode, ceiling: float = 0.01) -> Config:
    return Config(mode=mode, answer=0.25, agents=60, agent_hours=800.0, ceiling=ceiling, seed=5)


def test_predictive_talks_more_than_progressive_and_holds_every_24h_window_under_the_ceiling() -> None:
    progressive = simulate(floor(PacingMode.PROGRESSIVE))
    predictive = simulate(floor(PacingMode.PREDICTIVE))

    assert predictive.talk_min_per_agent_hour > progressive.talk_min_per_agent_hour + 3
    assert predictive.mean_wait_s < progressive.mean_wait_s
    for result in (progressive, predictive):
        assert result.agent_hours >= 800
        assert 0 < result.worst_24h() <= 0.01  # abandons happen (agents miss calls), never past the ceiling


def test_at_a_ceiling_it_cannot_keep_the_governor_pauses_the_queue() -> None:
    """A ceiling below what even progressive dialling abandons (agents miss 0.2 % of calls): the queue
    spends time paused, and its worst window still ends up near the ceiling, not far past it."""
    strict = simulate(floor(PacingMode.PREDICTIVE, ceiling=0.001))
    assert strict.paused_s > 0
    assert strict.worst_24h() < 0.005
