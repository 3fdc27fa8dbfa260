"""``dialler``: the operator's command line (``dialler migrate``, ``seed``, ``rebuild``, ``temporal-setup``)."""

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


async def seed(settings: Settings, users: int, seed_value: int, force: bool) -> None:
    from dialler.agents.demo import ensure_demo_accounts
    from dialler.db.engines import create_postgres_engine, session_factory
    from dialler.replica.seed import seed_replica

    report = await seed_replica(settings.replica_url, users=users, seed=seed_value, only_if_empty=not force)
    if report.skipped:
        print("replica already has users: nothing generated (use --force to add anyway)")
    else:
        print(
            f"replica: {report.users} users, {report.claims} claims, {report.requirements} requirements "
            f"in {report.seconds:.1f} s"
        )
    engine = create_postgres_engine(settings)
    async with session_factory(engine)() as session:
        created = await ensure_demo_accounts(session)
    await engine.dispose()
    print(f"demo accounts created: {created}")


async def rebuild(settings: Settings) -> None:
    from dialler.runtime import connect_temporal
    from workflows.queue_rebuild import QueueRebuildWorkflow, rebuild_input

    client = await connect_temporal(settings)
    workflow_input, workflow_id = rebuild_input(trigger="cli")
    report = await client.execute_workflow(
        QueueRebuildWorkflow.run, workflow_input, id=workflow_id, task_queue=settings.temporal_task_queue
    )
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
    seed_cmd = commands.add_parser("seed", help="generate demo data in the replica and the demo accounts")
    seed_cmd.add_argument("--users", type=int, default=50_000)
    seed_cmd.add_argument("--seed", type=int, default=42)
    seed_cmd.add_argument("--force", action="store_true", help="generate even when the replica has users")
    commands.add_parser("rebuild", help="run a full queue rebuild now and print its drift report")
    commands.add_parser(
        "temporal-setup",
        help="register the search attributes, set the namespace retention and create the schedules (idempotent)",
    )
    args = parser.parse_args(argv)

    settings = settings_or_exit()
    configure_logging(settings)
    if args.command == "migrate":
        asyncio.run(migrate(settings))
    elif args.command == "seed":
        asyncio.run(seed(settings, args.users, args.seed, args.force))
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
