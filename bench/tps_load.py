"""Benchmark of a TPS/CTPS file load: N numbers streamed into the do-not-call list.

    .venv/bin/python bench/tps_load.py [--numbers 1000000] [--chunk 65536]

The issue's target: 1 million numbers in under a minute. A generated file (UK mobile and landline
numbers in the forms people type, one in 1,000 lines invalid, CSV with a header and a date column as
the TPS file comes) is fed to :func:`dialler.compliance.dnc.load_tps` in ``--chunk``-byte pieces, as
the API receives an upload, into a fresh ``bench_*`` PostgreSQL database; then loaded again (the
idempotent reload: nothing new). Measured: wall time of each load and numbers per second. Not
included: finding the customers with the new numbers (one pass over the replica's users,
``dnc.customers_with_numbers``) and re-placing them, which scale with the customers, not the file.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import Stack  # noqa: E402
from dialler.compliance import dnc  # noqa: E402
from dialler.runtime import Stores  # noqa: E402


def tps_file(n: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    lines = ["Telephone Number,Date Added"]
    for i in range(n):
        if i % 1000 == 999:
            lines.append("not-a-number,2026-11-01")
            continue
        if rng.random() < 0.7:
            nsn = f"7{rng.choice('1234579')}{rng.randrange(10_000_000, 99_999_999)}"  # mobile
        else:
            nsn = f"20{rng.choice('378')}{rng.randrange(1_000_000, 9_999_999)}"  # London landline
        form = rng.randrange(3)
        number = f"0{nsn}" if form == 0 else f"+44{nsn}" if form == 1 else f"0{nsn[:4]} {nsn[4:]}"
        lines.append(f"{number},2026-11-{1 + i % 28:02d}")
    return ("\r\n".join(lines) + "\r\n").encode()


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--numbers", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=65_536)
    args = parser.parse_args()
    data = tps_file(args.numbers)
    print(f"file: {args.numbers:,} lines, {len(data) / 1e6:.1f} MB")
    async with Stack() as stack:
        stores = Stores.open(stack.settings())
        try:
            for label in ("first load", "reload"):
                started = time.perf_counter()
                result = await dnc.load_tps(stores.postgres, chunks(data, args.chunk), at=datetime.now(UTC))
                seconds = time.perf_counter() - started
                print(
                    f"{label}: {seconds:.1f} s ({args.numbers / seconds:,.0f} lines/s): loaded {result.loaded:,},"
                    f" already listed {result.already_listed:,}, invalid {result.invalid_count:,}"
                )
        finally:
            await stores.close()


if __name__ == "__main__":
    asyncio.run(main())
