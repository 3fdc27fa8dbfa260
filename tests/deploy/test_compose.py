"""docker-compose.yml's production profile, checked statically (there is no Docker engine in CI):
`docker-compose config` (Debian's docker-compose, `make system-deps`) and the references between
services; and the production env template against the settings' refusals."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from dialler.config import PROJECT_ROOT, Settings

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
ENV_TEMPLATE = PROJECT_ROOT / "deploy" / "production.env.example"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services(profile: str | None = None) -> dict[str, dict[str, Any]]:
    every = compose()["services"]
    return {name: s for name, s in every.items() if profile is None or profile in s.get("profiles", [])}


def filled_env(text: str) -> str:
    """The template with every blank or <placeholder> given a production-strength value."""
    lines = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            value = re.sub(r"<[^>]+>", "Zq8-long-random-secret", value)
            if not value:
                value = {
                    "DIALLER_CALLER_ID": "+441612345678",
                    "DIALLER_VOICE_FALLBACK_URL": "https://handler.twilio.com/twiml/EH" + "1" * 32,
                    "DIALLER_TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
                    "DIALLER_TWILIO_API_KEY_SID": "SK" + "1" * 32,
                    "DIALLER_TWILIO_TWIML_APP_SID": "AP" + "1" * 32,
                    "DIALLER_SQS_ENDPOINT_URL": "",
                    "TEMPORAL_CODEC_ENDPOINT": "",
                    "DIALLER_PAYLOAD_KEYS": "prod-1:" + base64.b64encode(b"k" * 32).decode(),
                }.get(key, "Zq8-long-random-secret-0123456789abcdef0123")
            line = f"{key}={value}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is not installed: run `make system-deps`"
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    shutil.copytree(PROJECT_ROOT / "deploy", tmp_path / "deploy")
    (tmp_path / ".env.production").write_text(filled_env(ENV_TEMPLATE.read_text()))

    result = subprocess.run(
        [binary, "--env-file", ".env.production", "--profile", "production", "--profile", "local", "config", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    missing = subprocess.run(
        [binary, "--profile", "production", "config", "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    # Without the secrets, compose refuses to start rather than run with empty passwords.
    assert missing.returncode != 0
    assert "set DIALLER_DB_PASSWORD in .env.production" in missing.stderr or "DIALLER_DB_PASSWORD" in missing.stderr


def test_every_reference_names_a_service_that_exists_in_the_same_profile() -> None:
    every = services()
    volumes = set(compose()["volumes"])

    for name, service in every.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in every, f"{name} depends on unknown {dependency}"
            assert set(service["profiles"]) <= set(every[dependency]["profiles"]), f"{name} → {dependency}"
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("./"):
                assert (PROJECT_ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in volumes, f"{name} mounts undeclared volume {source}"


def test_every_production_service_restarts_and_has_a_health_check() -> None:
    for name, service in services("production").items():
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), name
        assert "test" in service.get("healthcheck", {}), name


def test_production_runs_a_real_temporal_server_with_tls_and_persistent_redis() -> None:
    prod = services("production")
    images = [s.get("image", "") for s in prod.values()]

    assert not any("auto-setup" in image for image in images)
    assert prod["temporal"]["image"].startswith("temporalio/server:")
    assert prod["temporal-schema"]["image"].startswith("temporalio/admin-tools:")
    assert "update-schema" in " ".join(prod["temporal-schema"]["command"])
    assert prod["temporal"]["environment"]["TEMPORAL_TLS_REQUIRE_CLIENT_AUTH"] == "true"
    assert "TEMPORAL_CODEC_ENDPOINT" in prod["temporal-ui"]["environment"]
    assert prod["redis"]["command"][prod["redis"]["command"].index("--appendonly") + 1] == "yes"
    assert prod["temporal-setup"]["command"] == ["dialler", "temporal-setup"]
    # Only the TLS proxy is published; the API is reachable through it alone.
    published = {name for name, s in prod.items() if s.get("ports")}
    assert published == {"proxy"}
    caddyfile = (PROJECT_ROOT / "deploy" / "caddy" / "Caddyfile").read_text()
    assert "reverse_proxy api:8000" in caddyfile


def test_secrets_come_from_an_env_file_that_git_ignores() -> None:
    for name in ("migrate", "temporal-setup", "worker", "publisher", "api"):
        assert services()[name]["env_file"] == [".env.production"]
    assert "DIALLER_JWT_SECRET" not in COMPOSE.read_text()
    for path in (".env.production", "deploy/certs/client.key"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=PROJECT_ROOT, check=False).returncode == 0


def test_the_production_template_filled_in_starts_and_left_blank_is_refused(tmp_path: Path) -> None:
    filled = tmp_path / "filled.env"
    filled.write_text(filled_env(ENV_TEMPLATE.read_text()))
    blank = tmp_path / "blank.env"
    blank.write_text(ENV_TEMPLATE.read_text())

    settings = Settings(_env_file=filled)  # type: ignore[call-arg]
    with pytest.raises(ValidationError) as refused:
        Settings(_env_file=blank)  # type: ignore[call-arg]

    assert settings.is_production and settings.temporal_tls_enabled
    assert settings.trusted_proxies == ["172.16.0.0/12"]
    assert "jwt_secret: must be at least 32 characters" in str(refused.value)
    assert "caller_id: '' is not set" in str(refused.value)  # the CLI must be set, as the template says
    assert "# Required: the firm's CLI" in ENV_TEMPLATE.read_text()


def test_the_old_compose_defaults_would_be_refused() -> None:
    # What docker-compose.yml used to run with: the dev secrets on a public bind.
    with pytest.raises(ValidationError) as refused:
        Settings(  # type: ignore[call-arg]
            _env_file=None,
            postgres_url="postgresql+asyncpg://dialler:dialler@postgres:5432/dialler",
            replica_url="mysql+aiomysql://root:replica@mysql:3306/claims_app",
            redis_url="redis://redis:6379/0",
            temporal_address="temporal:7233",
            api_host="0.0.0.0",
        )

    for setting in ("jwt_secret", "twilio_auth_token", "postgres_url", "replica_url", "temporal_tls"):
        assert f"\n{setting}: " in str(refused.value)
