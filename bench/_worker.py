"""The real Temporal worker (workers.worker.build_worker: every workflow and activity) in its own
process, for the end-to-end benches, with the product's telephony against the bench's Twilio emulator.

    DIALLER_*=... python bench/_worker.py [--ring 0.2] [--talk 0.5] [--cdc-ingest]

Differs from ``python -m workers.worker`` only in what it starts besides the worker: no rebuild
schedule (a 15-minute rebuild falling inside a bench would be measured as noise), the CDC ingest
workflow only with ``--cdc-ingest``, and the emulator scripted so that every customer answers after
``--ring`` s and hangs up after ``--talk`` s, and every agent's phone accepts after ``--accept`` s.
Stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


async def serve(args: argparse.Namespace) -> None:
    from devstack.twilio_emulator.client import EmulatorClient
    from dialler.config import get_settings
    from dialler.integrations.twilio import TwilioTelephony
    from dialler.runtime import Stores, connect_temporal
    from workers.registry import ensure_cdc_ingest
    from workers.worker import build_worker

    settings = get_settings()
    client = await connect_temporal(settings)
    stores = Stores.open(settings)
    if not settings.twilio_api_base_url:
        raise SystemExit("bench/_worker.py needs DIALLER_TWILIO_API_BASE_URL: the bench stack's Twilio emulator")
    emulator = EmulatorClient(settings.twilio_api_base_url)
    emulator.script("*", behaviour="answer", answer_after_s=args.ring, hangup_after_s=args.talk)
    emulator.device("*", action="accept", accept_after_s=args.accept)
    emulator.close()
    telephony = TwilioTelephony(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with build_worker(client, stores, telephony):
            if args.cdc_ingest:
                await ensure_cdc_ingest(client, settings)
            print("worker ready", flush=True)
            await stop.wait()
    finally:
        await telephony.aclose()
        await stores.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ring", type=float, default=0.2)
    p.add_argument("--talk", type=float, default=0.5)
    p.add_argument("--accept", type=float, default=0.1, help="seconds before an agent's phone accepts")
    p.add_argument("--cdc-ingest", action="store_true")
    p.add_argument("--profile", default=None, help="write a cProfile of the worker's event loop thread here")
    args = p.parse_args()
    code = 0
    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        asyncio.run(serve(args))
    except Exception as exc:  # noqa: BLE001
        print(f"worker failed: {exc!r}", file=sys.stderr)
        code = 1
    if prof is not None:
        prof.disable()
        prof.dump_stats(args.profile)
    sys.stdout.flush()
    sys.stderr.flush()
    import os

    os._exit(code)


if __name__ == "__main__":
    main()
