"""A misconfigured service stops start-up with one clear line naming the service and its URL."""

from __future__ import annotations

import os
import subprocess
import sys

from dialler.config import PROJECT_ROOT, Settings


def run_api_preflight(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api"],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def env_for(settings: Settings) -> dict[str, str]:
    return {
        "DIALLER_POSTGRES_URL": settings.postgres_url,
        "DIALLER_REPLICA_URL": settings.replica_url,
        "DIALLER_REDIS_URL": settings.redis_url,
        "DIALLER_TEMPORAL_ADDRESS": settings.temporal_address,
        "DIALLER_SQS_ENDPOINT_URL": settings.sqs_endpoint_url or "",
        "DIALLER_CDC_QUEUE_NAME": settings.cdc_queue_name,
        "DIALLER_API_PORT": "1",  # never reached: preflight fails first
    }


def test_wrong_postgres_port_fails_with_one_line_and_masked_password(settings: Settings, replica_url: str) -> None:
    env = env_for(settings) | {"DIALLER_POSTGRES_URL": "postgresql+asyncpg://postgres:s3cret@127.0.0.1:1/dialler"}

    result = run_api_preflight(env)

    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) >= 1
    assert lines[0].startswith(
        "error: PostgreSQL at postgresql+asyncpg://postgres:***@127.0.0.1:1/dialler is unreachable"
    )
    assert "s3cret" not in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_replica_password_fails_with_one_line(settings: Settings, replica_url: str) -> None:
    bad = replica_url.replace("root@", "root:wrong-pass@")
    env = env_for(settings) | {"DIALLER_REPLICA_URL": bad}

    result = run_api_preflight(env)

    assert result.returncode == 1
    assert "error: MySQL replica at mysql+aiomysql://root:***@" in result.stderr
    assert "Access denied" in result.stderr
    assert "wrong-pass" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_typod_environment_refuses_to_start_naming_each_setting() -> None:
    # No services needed: the settings are refused before anything connects.
    result = run_api_preflight({"DIALLER_ENVIRONMENT": "prod", "DIALLER_API_PORT": "1"})

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "error: environment: 'prod' is not one of development, test, production (treated as production)"
    assert "error: jwt_secret: still the development default; set a real secret for production" in lines
    assert "dev-only-change-me" not in result.stderr
    assert "Traceback" not in result.stderr
