"""Pacing simulator: progressive against predictive, on the product's own pacing functions.

A discrete-event simulation of a calling floor. Agents log in for shifts, take breaks, talk and wrap
up; customers answer (a person or a machine), ring out or are busy, with the timings below. The pacer
is ``dialler.pacing.predictive`` (``plan_calls``, ``govern``, ``adapt_margin``) and the abandoned rate
is Ofcom's formula from ``dialler.pacing.abandon_rate``: the code the pacing workflow runs, on its
cadence: the pacer looks at the floor every ``--tick`` seconds (the workflow's tick), governs on the
rolling 24 h rate at each tick, and adapts its margin every 15 minutes.

    .venv/bin/python bench/pacing_sim.py                       # the table of docs/PACING.md
    .venv/bin/python bench/pacing_sim.py --agent-hours 2000 --answer 0.25 --mode predictive
    .venv/bin/python bench/pacing_sim.py --plot docs/pacing.png
    .venv/bin/python bench/pacing_sim.py --mode predictive --answer 0.25 --margin 2.5   # a fixed margin
    .venv/bin/python bench/pacing_sim.py --mode predictive --answer 0.25 --amd          # with AMD

What it models, per call placed (all times in seconds):
- a person answers with probability ``--answer`` after a ring of lognormal(10, 5), capped at 25;
- a machine answers with probability ``--machine`` after lognormal(14, 4): the agent it reaches
  takes ``MACHINE_HANDLING_S`` to recognise it and record voicemail;
- busy (5 %) ends after 3 s; otherwise the call rings out at 25 s (the dial timeout);
- a conversation is lognormal(``--talk``, 0.75 × talk), at least 20 s; wrap-up lognormal(``--wrap``, 10);
- an agent misses 0.2 % of the calls bridged to them (the device fails to accept in time): abandoned;
- with ``--amd``, answering-machine detection judges each answer: a machine it recognises is hung up
  on (no agent), one it takes for a person goes to an agent; a person it takes for a machine
  (``--amd-person-error``) is hung up on, which Ofcom counts as abandoned, and the rate is Ofcom's
  AM-adjusted one.
The estimates are kept per hour of day, with the product's fallback to all hours
(``dialler.pacing.hour_of_day``; the hour's estimator stands for its calls of recent days).
An answered call with no agent free is abandoned at once (the information message plays). Shifts:
half the floor works 08:00–16:00, half 12:00–20:00, each with two 15-minute breaks and a 30-minute
lunch at random times; nobody is called outside 08:00–20:00. "Agent-hours" are hours logged in and
not on a break.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum, auto
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dialler.pacing.abandon_rate import RateInputs, abandon_rate  # noqa: E402
from dialler.pacing.hour_of_day import enough_for_hour_of_day  # noqa: E402
from dialler.pacing.messages import MARGIN_EVERY_S, TICK_S  # noqa: E402
from dialler.pacing.predictive import (  # noqa: E402
    LOOSEN_UNDER,
    MARGIN_START,
    TARGET_SHARE,
    Estimates,
    Estimator,
    Floor,
    PacingMode,
    adapt_margin,
    govern,
    needs_agent,
    plan_calls,
)

RING_OUT_S = 25.0
BUSY_P = 0.05
BUSY_S = 3.0
MACHINE_HANDLING_S = 8.0
AGENT_MISS_P = 0.002
LEAVE_NOTICE_S = 30.0
# The first day is a warm-up, not measured: the estimates learn the list and the 24 h window fills.
# (Without history, one abandoned call among the first hundred is already 1 %: a queue's first day
# would pause at its first abandon, which says nothing about steady pacing.)
WARM_UP_DAYS = 1
HOUR = 3600.0
DAY = 24 * HOUR
CALLING_FROM_H, CALLING_TO_H = 8, 20


def lognormal(rng: random.Random, mean: float, sd: float) -> float:
    sigma2 = math.log(1 + (sd / mean) ** 2)
    return rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))


def ofcom_rate(*, abandoned: int, human: int, machine: int, amd_on: bool) -> float:
    """Ofcom's rate as the product computes it (machine-adjusted when AMD is on)."""
    rate = abandon_rate(RateInputs(abandoned=abandoned, live_answered=human, machine=machine, amd_on=amd_on)).rate
    return rate or 0.0


class Kind(Enum):
    PERSON = auto()
    MACHINE = auto()
    BUSY = auto()
    NO_ANSWER = auto()


class State(Enum):
    OFF = auto()
    READY = auto()
    TALKING = auto()
    WRAPPING = auto()
    BREAK = auto()


@dataclass
class Agent:
    id: int
    state: State = State.OFF
    since: float = 0.0
    reserved: Call | None = None  # progressive: the call placed for this agent
    ready_since: float = 0.0
    on_shift: bool = False
    leaving: bool = False  # asked for a break or to log off: no longer counted by the pacer


@dataclass
class Call:
    kind: Kind
    placed_at: float
    ends_at: float  # answer time, or when it rings out / is busy
    talk_s: float
    agent: Agent | None = None  # progressive: reserved for this agent


@dataclass
class Config:
    mode: PacingMode
    answer: float
    agents: int = 100
    agent_hours: float = 10_000.0
    machine: float = 0.10
    talk: float = 240.0
    wrap: float = 25.0
    ceiling: float = 0.01
    max_ratio: float = 3.0
    seed: int = 1
    tick_s: float = TICK_S
    margin: float | None = None  # held fixed (no adaptation); None: adapted as the product does
    loosen_under: float = LOOSEN_UNDER  # adapt_margin's
    amd: bool = False
    amd_person_error: float = 0.02  # a person judged a machine: hung up on, abandoned
    amd_machine_error: float = 0.15  # a machine judged a person: put through to an agent


@dataclass
class Hourly:
    drops: int = 0
    human: int = 0
    machine: int = 0


@dataclass
class Result:
    config: Config
    agent_hours: float = 0.0
    talk_s: float = 0.0
    conversations: int = 0
    dials: int = 0
    drops: int = 0
    waits: list[float] = field(default_factory=list)
    hours: dict[int, Hourly] = field(default_factory=dict)
    paused_s: float = 0.0
    tapered_s: float = 0.0
    wall_s: float = 0.0

    @property
    def talk_min_per_agent_hour(self) -> float:
        return self.talk_s / 60 / self.agent_hours if self.agent_hours else 0.0

    @property
    def calls_per_agent_hour(self) -> float:
        return self.conversations / self.agent_hours if self.agent_hours else 0.0

    @property
    def dials_per_agent_hour(self) -> float:
        return self.dials / self.agent_hours if self.agent_hours else 0.0

    def rate(self) -> float:
        total = Hourly()
        for h in self.hours.values():
            total.drops += h.drops
            total.human += h.human
            total.machine += h.machine
        return ofcom_rate(abandoned=total.drops, human=total.human, machine=total.machine, amd_on=self.config.amd)

    def worst_24h(self) -> float:
        """The highest rate over any 24 consecutive hours (hour-aligned windows)."""
        if not self.hours:
            return 0.0
        first, last = min(self.hours), max(self.hours)
        window: deque[Hourly] = deque()
        drops = human = machine = 0
        worst = 0.0
        for hour in range(first, last + 1):
            h = self.hours.get(hour, Hourly())
            window.append(h)
            drops, human, machine = drops + h.drops, human + h.human, machine + h.machine
            if len(window) > 24:
                old = window.popleft()
                drops, human, machine = drops - old.drops, human - old.human, machine - old.machine
            if hour >= first + 23:
                worst = max(worst, ofcom_rate(abandoned=drops, human=human, machine=machine, amd_on=self.config.amd))
        return worst

    @property
    def mean_wait_s(self) -> float:
        return sum(self.waits) / len(self.waits) if self.waits else 0.0


class Simulation:
    def __init__(self, config: Config) -> None:
        self.c = config
        self.rng = random.Random(config.seed)
        self.now = 0.0
        self.events: list[tuple[float, int, str, object]] = []
        self.seq = 0
        self.agents = [Agent(i) for i in range(config.agents)]
        self.in_flight: set[int] = set()
        self.calls: dict[int, Call] = {}
        self.result = Result(config)
        takes_agent = config.answer + config.machine * (config.amd_machine_error if config.amd else 1.0)
        start = Estimates(min(1.0, takes_agent * 1.25), 10.0, config.talk, config.wrap)
        # As the product: per hour of day, falling back to all hours (the last 24 h) while thin.
        self.estimator = Estimator.starting(start)
        self.hourly = [Estimator.starting(start) for _ in range(24)]
        self.margin = MARGIN_START if config.margin is None else config.margin
        self.window: deque[tuple[float, str]] = deque()  # (time, "drops" | "human" | "machine"), 24 h
        self.in_window = {"drops": 0, "human": 0, "machine": 0}
        self.counting_since = 0.0
        self.governed = govern(config.mode, rate=0.0, ceiling=config.ceiling)
        self.warming = WARM_UP_DAYS > 0

    # -- the event loop ----------------------------------------------------------------------------

    def at(self, t: float, what: str, payload: object = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, what, payload))

    def run(self) -> Result:
        started = time.perf_counter()
        days = WARM_UP_DAYS + math.ceil(self.c.agent_hours / (self.c.agents * 8 * 0.875)) + 1
        for day in range(days):
            self.schedule_day(day * DAY)
        self.at(CALLING_FROM_H * HOUR, "tick")
        if self.c.margin is None:
            self.at(MARGIN_EVERY_S, "adapt")
        while self.events and self.result.agent_hours < self.c.agent_hours:
            t, _, what, payload = heapq.heappop(self.events)
            if self.warming and t >= WARM_UP_DAYS * DAY:
                self.warming = False
                self.result = Result(self.c)
            self.account(t)
            self.now = t
            getattr(self, f"on_{what}")(payload)
        self.result.wall_s = time.perf_counter() - started
        return self.result

    def account(self, t: float) -> None:
        dt = t - self.now
        working = sum(1 for a in self.agents if a.state not in (State.OFF, State.BREAK))
        self.result.agent_hours += working * dt / HOUR
        if self.governed.paused:
            self.result.paused_s += dt
        elif self.governed.mode != self.c.mode:
            self.result.tapered_s += dt

    def schedule_day(self, day: float) -> None:
        for agent in self.agents:
            start = day + (8 if agent.id % 2 == 0 else 12) * HOUR + self.rng.uniform(0, 600)
            end = start + 8 * HOUR
            self.at(start, "login", agent)
            self.at(end, "logout", agent)
            for offset, length in ((self.rng.uniform(1.5, 2.5), 15), (self.rng.uniform(3.5, 4.5), 30)):
                self.at(start + offset * HOUR, "break", (agent, length * 60.0))
            self.at(start + self.rng.uniform(5.5, 6.5) * HOUR, "break", (agent, 15 * 60.0))

    # -- agents ------------------------------------------------------------------------------------

    def set_state(self, agent: Agent, state: State) -> None:
        agent.state = state
        agent.since = self.now
        if state == State.READY:
            agent.ready_since = self.now

    def on_login(self, agent: Agent) -> None:
        agent.on_shift = True
        self.set_state(agent, State.READY)

    # An agent who is about to leave (a break, the end of the shift) says so on their screen: the pacer
    # stops counting them at once, and they go once no call is on its way to them (the calls already
    # placed may still reach them meanwhile, as on a real floor).
    def on_logout(self, agent: Agent) -> None:
        if agent.state == State.BREAK or (agent.state == State.READY and agent.reserved is None and agent.leaving):
            agent.on_shift = False
            agent.leaving = False
            if agent.state == State.READY:
                self.set_state(agent, State.OFF)
            return
        agent.leaving = True
        self.at(self.now + LEAVE_NOTICE_S, "logout", agent)

    def on_break(self, payload: object) -> None:
        agent, length = payload  # type: ignore[misc]
        if not agent.on_shift or agent.state == State.BREAK:
            return
        if agent.state == State.READY and agent.reserved is None and agent.leaving:
            agent.leaving = False
            self.set_state(agent, State.BREAK)
            self.at(self.now + length, "back", agent)
            return
        agent.leaving = True
        self.at(self.now + LEAVE_NOTICE_S, "break", (agent, length))

    def on_back(self, agent: Agent) -> None:
        self.set_state(agent, State.READY if agent.on_shift else State.OFF)

    def on_talk_end(self, agent: Agent) -> None:
        self.set_state(agent, State.WRAPPING)
        self.at(self.now + max(3.0, lognormal(self.rng, self.c.wrap, 10.0)), "wrap_end", agent)

    def on_wrap_end(self, agent: Agent) -> None:
        self.set_state(agent, State.READY if agent.on_shift else State.OFF)

    def on_machine_done(self, agent: Agent) -> None:
        self.set_state(agent, State.READY if agent.on_shift else State.OFF)

    def free_agent(self) -> Agent | None:
        ready = [a for a in self.agents if a.state == State.READY and a.reserved is None]
        return min(ready, key=lambda a: a.ready_since) if ready else None

    # -- calls -------------------------------------------------------------------------------------

    def place(self, agent: Agent | None) -> None:
        r = self.rng.random()
        if r < self.c.answer:
            kind, after = Kind.PERSON, min(lognormal(self.rng, 10.0, 5.0), RING_OUT_S - 0.5)
        elif r < self.c.answer + self.c.machine:
            kind, after = Kind.MACHINE, min(lognormal(self.rng, 14.0, 4.0), RING_OUT_S - 0.5)
        elif r < self.c.answer + self.c.machine + BUSY_P:
            kind, after = Kind.BUSY, BUSY_S
        else:
            kind, after = Kind.NO_ANSWER, RING_OUT_S
        talk = max(20.0, lognormal(self.rng, self.c.talk, 0.75 * self.c.talk))
        call = Call(kind, self.now, self.now + after, talk, agent)
        self.seq += 1
        self.calls[self.seq] = call
        self.in_flight.add(self.seq)
        if agent is not None:
            agent.reserved = call
        self.result.dials += 1
        self.at(call.ends_at, "call_end", self.seq)

    def on_call_end(self, call_id: int) -> None:
        call = self.calls.pop(call_id)
        self.in_flight.discard(call_id)
        answered = call.kind in (Kind.PERSON, Kind.MACHINE)
        judged_machine = call.kind == Kind.MACHINE
        if answered and self.c.amd:
            error = self.c.amd_person_error if call.kind == Kind.PERSON else self.c.amd_machine_error
            judged_machine = (call.kind == Kind.MACHINE) != (self.rng.random() < error)
        person = needs_agent(answered=answered, machine=judged_machine, amd_on=self.c.amd)
        for estimator in (self.estimator, self.hourly[self.hour_of_day(call.placed_at)]):
            estimator.dialled(person=person, machine=judged_machine, ring_s=call.ends_at - call.placed_at)
        agent = call.agent
        if agent is not None:
            agent.reserved = None
            if agent.state != State.READY:  # logged out or on a break while the call rang
                agent = None
        elif person:
            agent = self.free_agent()
        if not answered:
            return
        if not person:  # AMD hung up: on a machine, as meant; on a person, an abandoned call
            self.answer(call.kind, dropped=call.kind == Kind.PERSON)
            return
        if agent is None or self.rng.random() < AGENT_MISS_P:
            self.answer(call.kind, dropped=True)
            return
        self.answer(call.kind, dropped=False)
        self.result.waits.append(self.now - agent.ready_since)
        self.set_state(agent, State.TALKING)
        if call.kind == Kind.PERSON:
            self.result.talk_s += call.talk_s
            self.result.conversations += 1
            self.estimator.talk.observe(call.talk_s)
            self.hourly[self.hour_of_day(call.placed_at)].talk.observe(call.talk_s)
            self.at(self.now + call.talk_s, "talk_end", agent)
        else:
            self.at(self.now + MACHINE_HANDLING_S, "machine_done", agent)

    def answer(self, kind: Kind, *, dropped: bool) -> None:
        hour = int(self.now // HOUR)
        h = self.result.hours.setdefault(hour, Hourly())
        if dropped:
            h.drops += 1
            self.result.drops += 1
            counted = "drops"
        elif kind == Kind.PERSON:
            h.human += 1
            counted = "human"
        else:
            h.machine += 1
            counted = "machine"
        self.window.append((self.now, counted))
        self.in_window[counted] += 1

    # -- the pacer and the governor ----------------------------------------------------------------

    def rate_24h(self) -> float:
        while self.window and self.window[0][0] < self.now - DAY:
            self.in_window[self.window.popleft()[1]] -= 1
        counts = self.in_window
        return ofcom_rate(
            abandoned=counts["drops"], human=counts["human"], machine=counts["machine"], amd_on=self.c.amd
        )

    def counts_since(self, since: float) -> Hourly:
        counts = Hourly()
        for t, counted in reversed(self.window):
            if t < since:
                break
            setattr(counts, counted, getattr(counts, counted) + 1)
        return counts

    def on_adapt(self, _: object) -> None:
        hour = self.counts_since(self.now - HOUR)
        self.margin = adapt_margin(
            self.margin,
            recent_rate=ofcom_rate(abandoned=hour.drops, human=hour.human, machine=hour.machine, amd_on=self.c.amd),
            target_rate=TARGET_SHARE * self.c.ceiling,
            answered=hour.drops + hour.human,
            loosen_under=self.c.loosen_under,
        )
        if self.events:
            self.at(self.now + MARGIN_EVERY_S, "adapt")

    def on_tick(self, _: object) -> None:
        """The pacing workflow's tick: the governor on the 24 h rate, then the plan. Outside calling
        hours the next tick is at the next opening."""
        if not self.calling_hours():
            day_start = self.now - self.now % DAY
            opens = day_start + CALLING_FROM_H * HOUR
            self.at(opens if opens > self.now else opens + DAY, "tick")
            return
        if not self.warming:
            self.governed = govern(self.c.mode, rate=self.rate_24h(), ceiling=self.c.ceiling)
        self.pace()
        self.at(self.now + self.c.tick_s, "tick")

    def pace(self) -> None:
        if self.governed.paused:
            return
        ready = [a for a in self.agents if a.state == State.READY and not a.leaving]
        mode = self.governed.mode
        if mode == PacingMode.PROGRESSIVE:
            for agent in ready:
                if agent.reserved is None:
                    self.place(agent)
            return
        floor = Floor(
            ready=len(ready),
            in_flight=len(self.in_flight),
            ringing_for_s=tuple(self.now - self.calls[i].placed_at for i in self.in_flight),
            wrapping_for_s=tuple(self.now - a.since for a in self.agents if a.state == State.WRAPPING),
            talking_for_s=tuple(self.now - a.since for a in self.agents if a.state == State.TALKING),
        )
        plan = plan_calls(
            mode=mode,
            floor=floor,
            estimates=self.estimates(),
            margin=self.margin,
            max_ratio=self.c.max_ratio,
        )
        for _ in range(plan.calls):
            self.place(None)

    def estimates(self) -> Estimates:
        same_hour = self.hourly[self.hour_of_day(self.now)]
        chosen = same_hour if enough_for_hour_of_day(same_hour.answer.count) else self.estimator
        return chosen.estimates()

    @staticmethod
    def hour_of_day(t: float) -> int:
        return int((t % DAY) // HOUR)

    def calling_hours(self) -> bool:
        return CALLING_FROM_H <= (self.now % DAY) / HOUR < CALLING_TO_H


def simulate(config: Config) -> Result:
    return Simulation(config).run()


def table(results: list[Result]) -> str:
    lines = [
        "| mode | answer rate | talk-min / agent-hour | conversations / agent-hour | dials / agent-hour "
        "| abandoned (mean) | abandoned (worst 24 h) | mean wait (s) | tapered / paused (h) | agent-hours |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c = r.config
        lines.append(
            f"| {c.mode.value} | {c.answer:.0%} | {r.talk_min_per_agent_hour:.1f} | {r.calls_per_agent_hour:.1f} "
            f"| {r.dials_per_agent_hour:.1f} | {r.rate():.2%} | {r.worst_24h():.2%} | {r.mean_wait_s:.0f} "
            f"| {r.tapered_s / HOUR:.0f} / {r.paused_s / HOUR:.0f} | {r.agent_hours:,.0f} |"
        )
    return "\n".join(lines)


def plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, marker in ((PacingMode.PROGRESSIVE, "o"), (PacingMode.PREDICTIVE, "s")):
        rs = sorted((r for r in results if r.config.mode == mode), key=lambda r: r.config.answer)
        ax.plot(
            [100 * r.worst_24h() for r in rs],
            [r.talk_min_per_agent_hour for r in rs],
            marker=marker,
            label=mode.value,
        )
        for r in rs:
            ax.annotate(
                f"{r.config.answer:.0%}",
                (100 * r.worst_24h(), r.talk_min_per_agent_hour),
                textcoords="offset points",
                xytext=(5, 5),
            )
    ax.axvline(1.0, linestyle="--", color="grey", label="ceiling 1 %")
    ax.axhline(50.0, linestyle=":", color="grey", label="target 50 talk-min")
    ax.set_xlabel("abandoned rate, worst 24 h window (%)")
    ax.set_ylabel("talk-minutes per agent-hour")
    ax.set_title("Utilisation against abandoned rate (labels: answer rate)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=[m.value for m in PacingMode if m != PacingMode.PREVIEW], action="append")
    parser.add_argument("--answer", type=float, action="append", help="person answer rate (repeatable)")
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--agent-hours", type=float, default=10_000.0)
    parser.add_argument("--machine", type=float, default=0.10)
    parser.add_argument("--talk", type=float, default=240.0)
    parser.add_argument("--wrap", type=float, default=25.0)
    parser.add_argument("--ceiling", type=float, default=0.01)
    parser.add_argument("--max-ratio", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tick", type=float, default=TICK_S, help="seconds between the pacer's looks at the floor")
    parser.add_argument("--margin", type=float, help="hold predictive's margin (sd) fixed instead of adapting it")
    parser.add_argument(
        "--loosen-under", type=float, default=LOOSEN_UNDER, help="adapt_margin loosens under this share of the target"
    )
    parser.add_argument("--amd", action="store_true", help="answering-machine detection on, with errors")
    parser.add_argument("--amd-person-error", type=float, default=0.02, help="people AMD takes for machines")
    parser.add_argument("--amd-machine-error", type=float, default=0.15, help="machines AMD takes for people")
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    modes = [PacingMode(m) for m in (args.mode or ["progressive", "predictive"])]
    answers = args.answer or [0.15, 0.25, 0.35]
    results = []
    for answer in answers:
        for mode in modes:
            config = Config(
                mode=mode,
                answer=answer,
                agents=args.agents,
                agent_hours=args.agent_hours,
                machine=args.machine,
                talk=args.talk,
                wrap=args.wrap,
                ceiling=args.ceiling,
                max_ratio=args.max_ratio,
                seed=args.seed,
                tick_s=args.tick,
                margin=args.margin,
                loosen_under=args.loosen_under,
                amd=args.amd,
                amd_person_error=args.amd_person_error,
                amd_machine_error=args.amd_machine_error,
            )
            result = simulate(config)
            results.append(result)
            print(
                f"{mode.value:12} answer {answer:.0%}: {result.talk_min_per_agent_hour:.1f} talk-min/agent-hour, "
                f"worst 24 h {result.worst_24h():.2%}, {result.agent_hours:,.0f} agent-hours in {result.wall_s:.0f} s",
                file=sys.stderr,
            )
    print(table(results))
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
