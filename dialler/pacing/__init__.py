"""Pacing: how fast the dialler may call. Ofcom's abandoned-call rate per queue over a rolling 24 h,
the ceiling a queue's progressive dialling stops at, and the verdict (open, or paused and why).

``abandon_rate`` holds the pure rules (no I/O, ``now`` never read), so that a pacing workflow can run
them deterministically; ``service`` loads their inputs from PostgreSQL and stores each queue's ceiling.
``predictive`` decides how many calls a queue places (progressive or predictive) and how the governor
tapers and pauses it; ``bench/pacing_sim.py`` runs those same functions (``docs/PACING.md``)."""
