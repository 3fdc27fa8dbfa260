"""``dialler``: the operator's command line (``dialler migrate``, ``rebuild``, ``temporal-setup``,
``fallback-twiml``).

Demo data is not the operator's business: ``python -m devstack seed`` generates it on development stacks."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from dialler.config import Settings, settings_or_exit
from dialler.logs import configure_logging


async def migrate(settings: Settings) -> None:
    from dialler.db.migrate import upgrade

    await upgrade(settings.postgres_url)
    print("PostgreSQL schema is at the latest migration")


async def rebuild(settings: Settings) -> None:
    from dialler.runtime import connect_temporal
    from workflows.queue_rebuild_client import run_rebuild

    client = await connect_temporal(settings)
    report = await run_rebuild(client, settings, trigger="cli")
    print(report.summary())


async def temporal_setup(settings: Settings) -> None:
    from dialler.runtime import connect_temporal
    from workers.temporal_setup import temporal_setup as setup

    client = await connect_temporal(settings)
    for line in await setup(client, settings):
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dialler", description="RMC Dialler operations")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply the PostgreSQL migrations")
    commands.add_parser("rebuild", help="run a full queue rebuild now and print its drift report")
    commands.add_parser(
        "temporal-setup",
        help="register the search attributes, set the namespace retention and create the schedules (idempotent)",
    )
    fallback = commands.add_parser(
        "fallback-twiml",
        help="print the information message Twilio plays when it cannot reach the API at a call's answer "
        "(publish it as a TwiML Bin and set DIALLER_VOICE_FALLBACK_URL to its URL)",
    )
    fallback.add_argument("--company-name", required=True, help="as DIALLER_COMPANY_NAME")
    fallback.add_argument("--caller-id", required=True, help="the number to call back on, as DIALLER_CALLER_ID")
    args = parser.parse_args(argv)

    if args.command == "fallback-twiml":
        # Needs no settings: it is made before the URL that production's settings require exists.
        from dialler.integrations.twilio_voice import abandoned_message

        # The command's output is the document itself, to paste into a TwiML Bin: not a log line.
        sys.stdout.write(abandoned_message(args.company_name, args.caller_id) + "\n")
        return 0
    settings = settings_or_exit()
    configure_logging(settings)
    if args.command == "migrate":
        asyncio.run(migrate(settings))
    elif args.command == "rebuild":
        asyncio.run(rebuild(settings))
    elif args.command == "temporal-setup":
        asyncio.run(temporal_setup(settings))
    return 0


def entry() -> None:
    code = main()
    sys.stdout.flush()
    os._exit(code)  # SDK issue #300: the interpreter can abort at exit after using the Temporal SDK


if __name__ == "__main__":  # ``python -m workers.cli``: the same as the ``dialler`` script
    entry()
