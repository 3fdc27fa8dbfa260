"""The test harness: real services, each test isolated.

- PostgreSQL and Redis: the machine's services (``DIALLER_TEST_POSTGRES_URL``, ``DIALLER_TEST_REDIS_URL``);
  one fresh, migrated database per test session, tables emptied before each test that uses them;
  a unique Redis key prefix per test.
- MariaDB with row binlog, moto SQS and the Temporal dev server: started here, on free ports, under
  ``.run/test-<pid>``, and stopped by PID at the end of the session.
- Temporal: a fresh task queue per test on the session's dev server.
- Twilio: the product's one telephony path (the real ``twilio`` SDK) against the Twilio emulator, its
  own process on a free port, emptied before each test; its webhooks go to ``public_base_url`` (the
  live API of the end-to-end tests, or nobody).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from devstack import services
from devstack.stack import host_fallback
from devstack.twilio_emulator.client import EmulatorClient
from dialler import search_attributes
from dialler.config import PROJECT_ROOT, Settings
from dialler.db.migrate import upgrade
from dialler.db.models import Base
from dialler.integrations.twilio import TwilioTelephony
from dialler.runtime import Stores
from dialler.security.codec import data_converter
from tests.support.clock import CLOCK_OFFSET_S
from tests.support.replica import create_replica_database
from workers.worker import build_worker

POSTGRES_URL = os.environ.get("DIALLER_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("DIALLER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def process_group() -> Iterator[services.ProcessGroup]:
    run_dir = PROJECT_ROOT / ".run" / f"test-{os.getpid()}"
    group = services.ProcessGroup(run_dir, die_with_parent=True)
    yield group
    group.stop_all()
    shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb_url(process_group: services.ProcessGroup) -> str:
    """Server URL (no database) of a private MariaDB with a row binlog."""
    port = services.free_port()
    services.start_mariadb(process_group, port)
    return f"mysql+aiomysql://root@127.0.0.1:{port}/"


@pytest.fixture(scope="session")
def sqs_endpoint(process_group: services.ProcessGroup) -> str:
    port = services.free_port()
    services.start_moto(process_group, port)
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def twilio_emulator(process_group: services.ProcessGroup) -> Iterator[EmulatorClient]:
    """The Twilio emulator (its own process) on a free port, with the development account and API
    key of ``Settings()``. Reset before each test that uses it: no scripts, calls or demo rules."""
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    port = services.free_port()
    services.start_twilio_emulator(
        process_group,
        port,
        account_sid=defaults.twilio_account_sid,
        auth_token=defaults.twilio_auth_token.get_secret_value(),
        api_keys={defaults.twilio_api_key_sid: defaults.twilio_api_key_secret.get_secret_value()},
    )
    client = EmulatorClient(f"http://127.0.0.1:{port}")
    yield client
    client.close()


@pytest.fixture
def emulator(twilio_emulator: EmulatorClient) -> EmulatorClient:
    """The session's emulator, emptied for this test, with the demo rules off (every number answers
    after 1 s unless scripted)."""
    twilio_emulator.reset()
    twilio_emulator.demo_rules(False)
    return twilio_emulator


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(services.VENV_BIN / "temporal"),
        search_attributes=search_attributes.ALL,
        # The processes' data converter (payloads encrypted with the default settings' development key,
        # the one every test's Settings holds).
        data_converter=data_converter(Settings(_env_file=None)),  # type: ignore[call-arg]
        dev_server_extra_args=["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=off"],
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture
async def temporal_client(temporal_env: WorkflowEnvironment, settings: Settings) -> AsyncIterator[Client]:
    """The session's client. Workflow ids are business keys (call-<user id>), so a workflow a test
    left running would collide with the next test's customer of the same id: every running workflow
    is terminated before the test and after it. Before as well: visibility lists a workflow started
    in a test's last moments a little later, and a server holds only this process's tests (one at a
    time)."""
    client = temporal_env.client
    await _terminate_running(client)
    yield client
    await _terminate_running(client)


async def _terminate_running(client: Client) -> None:
    async for execution in client.list_workflows("ExecutionStatus = 'Running'"):
        with contextlib.suppress(Exception):
            await client.get_workflow_handle(execution.id, run_id=execution.run_id).terminate("test finished")


@pytest_asyncio.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str]:
    """A fresh database for this test session, migrated to head by Alembic."""
    name = f"dialler_test_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    await upgrade(url)
    yield url
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest_asyncio.fixture(scope="session")
async def replica_server_url(mariadb_url: str) -> str:
    return mariadb_url


@pytest_asyncio.fixture
async def replica_url(mariadb_url: str) -> str:
    """A fresh, empty replica database for one test."""
    return await create_replica_database(mariadb_url, f"claims_{uuid.uuid4().hex[:10]}")


@pytest_asyncio.fixture
async def replica_writer(replica_url: str) -> AsyncIterator[AsyncEngine]:
    """Writes to the replica as the main app would (the dialler's own engine is read-only)."""
    engine = create_async_engine(replica_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def settings(
    request: pytest.FixtureRequest,
    postgres_url: str,
    sqs_endpoint: str,
    temporal_env: WorkflowEnvironment,
    emulator: EmulatorClient,
    tmp_path: Path,
) -> Settings:
    """Settings pointing at this session's services (Twilio: the emulator), with names unique to this test."""
    unique = uuid.uuid4().hex[:10]
    replica = (
        request.getfixturevalue("replica_url")
        if "replica_url" in request.fixturenames
        else "mysql+aiomysql://root@127.0.0.1:1/unused"
    )
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        run_dir=tmp_path / "run",
        postgres_url=postgres_url,
        replica_url=replica,
        redis_url=REDIS_URL,
        redis_prefix=f"test:{unique}",
        temporal_address=temporal_env.client.service_client.config.target_host,
        temporal_task_queue=f"tq-{unique}",
        sqs_endpoint_url=sqs_endpoint,
        cdc_queue_name=f"cdc-{unique}",
        cdc_dlq_name=f"cdc-dlq-{unique}",
        cdc_max_receive_count=2,
        clock_offset_s=CLOCK_OFFSET_S,
        public_base_url=f"http://127.0.0.1:{services.free_port()}",
        twilio_api_base_url=emulator.url,
    )
    # As `make run`: the information message hosted apart from the API, for Twilio's fallback.
    return settings.model_copy(update={"voice_fallback_url": host_fallback(settings, emulator)})


@pytest_asyncio.fixture
async def stores(settings: Settings) -> AsyncIterator[Stores]:
    stores = Stores.open(settings)
    await _empty_postgres(stores.postgres)
    yield stores
    await _delete_prefix(stores.redis, settings.redis_prefix)
    await stores.close()


async def _empty_postgres(engine: AsyncEngine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


async def _delete_prefix(redis: Redis, prefix: str) -> None:
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
    for i in range(0, len(keys), 500):
        await redis.unlink(*keys[i : i + 500])


@pytest_asyncio.fixture
async def telephony(stores: Stores, emulator: EmulatorClient) -> AsyncIterator[TwilioTelephony]:
    """The product's telephony against the emulator, whose customers answer after a short ring and
    talk until hung up (2 minutes at most); agents' phones accept after 0.5 s. Tests script a number
    (``emulator.script(number, behaviour="busy")``) or every number (``"*"``) for other outcomes."""
    emulator.script("*", behaviour="answer", answer_after_s=0.3, hangup_after_s=120)
    twilio = TwilioTelephony(stores.settings)
    yield twilio
    await twilio.aclose()


@pytest_asyncio.fixture
async def worker(temporal_client: Client, stores: Stores, telephony: TwilioTelephony) -> AsyncIterator[Worker]:
    """The real worker (every workflow and activity) on this test's own task queue."""
    async with build_worker(
        temporal_client, stores, telephony, task_queue=stores.settings.temporal_task_queue
    ) as running:
        yield running
