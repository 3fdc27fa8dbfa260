from __future__ import annotations

import base64
import re

import pytest
from pydantic import ValidationError

from dialler.compliance.drama import is_drama_number
from dialler.config import PROJECT_ROOT, Environment, Settings, mask_url
from dialler.security.keys import DEVELOPMENT_KEYS

# Settings a firm could really run with: nothing at a development default.
PRODUCTION: dict[str, object] = {
    "environment": "production",
    "api_host": "0.0.0.0",
    "postgres_url": "postgresql+asyncpg://dialler:Xq93-long-random@db.internal:5432/dialler",
    "replica_url": "mysql+aiomysql://dialler_ro:Ht72-long-random@replica.internal:3306/claims_app",
    "redis_url": "rediss://:Rk55-long-random@redis.internal:6380/0",
    "sqs_endpoint_url": None,
    "aws_access_key_id": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "temporal_address": "dialler.a1b2c.tmprl.cloud:7233",
    "temporal_namespace": "dialler.a1b2c",
    "temporal_api_key": "tc-api-key",
    "jwt_secret": "p" * 48,
    "telephony_mode": "twilio",
    "twilio_account_sid": "AC" + "1" * 32,
    "twilio_auth_token": "real-auth-token",
    "twilio_api_key_sid": "SK" + "1" * 32,
    "twilio_api_key_secret": "real-api-secret",
    "twilio_twiml_app_sid": "AP" + "1" * 32,
    "caller_id": "+441612345678",
    "voice_fallback_url": "https://handler.twilio.com/twiml/EH" + "1" * 32,
    "portal_api_key": "real-portal-key",
    "metrics_token": "real-metrics-token",
    "payload_keys": "prod-1:" + base64.b64encode(b"k" * 32).decode(),
}


def refusals(**settings: object) -> list[str]:
    """The refusal lines of settings that must not start (fails if they start)."""
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, **settings)  # type: ignore[call-arg, arg-type]
    (error,) = caught.value.errors()
    message = str(error["msg"])
    assert message.startswith("Value error, refusing to start:\n")
    return message.splitlines()[1:]


def test_every_setting_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^DIALLER_([A-Z0-9_]+)=", (PROJECT_ROOT / ".env.example").read_text(), re.M))

    assert documented == {name.upper() for name in Settings.model_fields}


def test_production_settings_start() -> None:
    settings = Settings(_env_file=None, **PRODUCTION)  # type: ignore[call-arg, arg-type]

    assert settings.environment is Environment.PRODUCTION
    assert settings.is_production


def test_workflows_run_outside_the_sandbox_in_production_and_inside_it_elsewhere() -> None:
    """The sandbox costs CPU on every workflow task: production goes without it unless asked, while
    development and the suite keep it, so non-deterministic workflow code fails there first."""
    assert not Settings(_env_file=None, **PRODUCTION).workflows_sandboxed  # type: ignore[call-arg, arg-type]
    assert Settings(_env_file=None, **{**PRODUCTION, "workflow_sandbox": True}).workflows_sandboxed  # type: ignore[call-arg, arg-type]
    assert Settings(_env_file=PROJECT_ROOT / ".env.example").workflows_sandboxed  # type: ignore[call-arg]


def test_production_refuses_every_development_default_at_once_one_line_each() -> None:
    lines = refusals(environment="production")

    named = [line.split(":", 1)[0] for line in lines]
    assert named == [
        "jwt_secret",
        "twilio_auth_token",
        "twilio_api_key_secret",
        "portal_api_key",
        "metrics_token",
        "payload_keys",
        "twilio_account_sid",
        "twilio_api_key_sid",
        "twilio_twiml_app_sid",
        "postgres_url",
        "replica_url",
        "redis_url",
        "aws_access_key_id",
        "aws_secret_access_key",
        "caller_id",
        "voice_fallback_url",
    ]


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"jwt_secret": "dev-only-change-me-0123456789abcdef0123456789abcdef"}, "jwt_secret"),
        ({"twilio_auth_token": "dev-twilio-auth-token"}, "twilio_auth_token"),
        ({"twilio_api_key_secret": "dev-twilio-api-secret"}, "twilio_api_key_secret"),
        ({"portal_api_key": "dev-portal-key"}, "portal_api_key"),
        ({"metrics_token": "dev-metrics-token"}, "metrics_token"),
        ({"postgres_url": "postgresql+asyncpg://dialler:dialler@postgres:5432/dialler"}, "postgres_url"),
        ({"postgres_url": "postgresql+asyncpg://postgres@127.0.0.1:5432/dialler"}, "postgres_url"),
        ({"replica_url": "mysql+aiomysql://root:replica@mysql:3306/claims_app"}, "replica_url"),
        ({"redis_url": "redis://127.0.0.1:6379/0"}, "redis_url"),
        ({"aws_access_key_id": "local"}, "aws_access_key_id"),
        ({"aws_secret_access_key": "testing"}, "aws_secret_access_key"),
        ({"clock_offset_s": 3600}, "clock_offset_s"),
        ({"caller_id": "+441614960000"}, "caller_id"),
        ({"caller_id": "020 7946 0123"}, "caller_id"),
        ({"caller_id": "+447700900999"}, "caller_id"),
        ({"caller_id": ""}, "caller_id"),  # blank: Twilio would refuse every call
        ({"caller_id": "+14155550100"}, "caller_id"),  # a US number
        ({"caller_id": "+44161234"}, "caller_id"),  # not a valid UK number
        ({"caller_id": "09011234567"}, "caller_id"),  # premium rate: a call back costs more than national
        ({"telephony_mode": "simulated"}, "telephony_mode"),
        ({"twilio_api_base_url": "http://127.0.0.1:4010"}, "twilio_api_base_url"),
        ({"voice_fallback_url": None}, "voice_fallback_url"),
        ({"fail_points": ["dial.before_create"]}, "fail_points"),
        ({"refresh_token_ttl_s": 7 * 24 * 3600}, "refresh_token_ttl_s"),
        ({"voice_token_ttl_s": 86400}, "voice_token_ttl_s"),
        ({"temporal_api_key": None, "temporal_address": "temporal.internal:7233"}, "temporal_tls"),
        ({"payload_keys": DEVELOPMENT_KEYS}, "payload_keys"),
    ],
)
def test_production_refuses_each_unsafe_setting_naming_it(override: dict[str, object], setting: str) -> None:
    lines = refusals(**(PRODUCTION | override))

    assert len(lines) == 1
    assert lines[0].startswith(f"{setting}: ")


@pytest.mark.parametrize(
    "caller_id", ["+441612345678", "0161 234 5678", "07912345678", "0300 123 4567", "0800 123 4567"]
)
def test_production_takes_a_valid_uk_caller_id(caller_id: str) -> None:
    """Geographic, mobile, 03 and freephone numbers all cost a caller no more than a national call."""
    assert Settings(_env_file=None, **(PRODUCTION | {"caller_id": caller_id})).caller_id == caller_id  # type: ignore[call-arg, arg-type]


@pytest.mark.parametrize(
    ("caller_id", "why"),
    [
        ("", "is not set"),
        ("+14155550100", "is not a UK number"),
        ("+44161234", "is not a valid UK number"),
        ("+441614960000", "is in an Ofcom drama range"),
    ],
)
def test_a_refused_caller_id_says_why(caller_id: str, why: str) -> None:
    [line] = refusals(**(PRODUCTION | {"caller_id": caller_id}))

    assert line.startswith(f"caller_id: {caller_id!r} {why}")


@pytest.mark.parametrize("environment", ["development", "production"])
def test_an_old_env_asking_for_simulated_telephony_is_refused_with_the_way_forward(environment: str) -> None:
    settings = PRODUCTION if environment == "production" else {"environment": "development"}
    lines = refusals(**(settings | {"telephony_mode": "simulated"}))

    assert lines[0].startswith("telephony_mode: 'simulated' was removed")
    assert "delete DIALLER_TELEPHONY_MODE" in lines[0] and "Twilio emulator" in lines[0]
    assert Settings(_env_file=None).telephony_mode.value == "twilio"  # type: ignore[call-arg]


def test_a_secret_never_appears_in_a_refusal() -> None:
    lines = refusals(**(PRODUCTION | {"postgres_url": "postgresql+asyncpg://dialler:dialler@db:5432/dialler"}))

    assert lines == [
        "postgres_url: the development default or a development password (postgresql+asyncpg://dialler:***@db:5432/dialler)"
    ]


@pytest.mark.parametrize("typo", ["prod", "Production", "staging", "dev", ""])
def test_an_unknown_environment_runs_as_production_and_is_refused(typo: str) -> None:
    lines = refusals(**(PRODUCTION | {"environment": typo}))

    assert lines == [f"environment: {typo!r} is not one of development, test, production (treated as production)"]


def test_an_unknown_environment_with_development_defaults_lists_them_too() -> None:
    lines = refusals(environment="prod")

    assert lines[0].startswith("environment: 'prod'")
    assert any(line.startswith("jwt_secret: ") for line in lines)


@pytest.mark.parametrize("environment", ["development", "test"])
def test_development_on_a_public_bind_is_production(environment: str) -> None:
    lines = refusals(environment=environment, api_host="0.0.0.0")

    assert lines[0].startswith("jwt_secret: still the development default")
    assert lines[0].endswith("(api_host 0.0.0.0 is not loopback)")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_development_on_loopback_keeps_its_defaults(host: str) -> None:
    settings = Settings(_env_file=None, environment="development", api_host=host, clock_offset_s=60)  # type: ignore[call-arg]

    assert not settings.is_production


@pytest.mark.parametrize(
    "tls",
    [
        {"temporal_tls": True},
        {"temporal_tls_server_ca": "/etc/dialler/temporal-ca.pem"},
        {"temporal_tls_client_cert": "/etc/dialler/c.pem", "temporal_tls_client_key": "/etc/dialler/c.key"},
        {"temporal_api_key": "key"},
    ],
)
def test_production_accepts_a_remote_temporal_with_tls(tls: dict[str, object]) -> None:
    base = PRODUCTION | {"temporal_api_key": None, "temporal_address": "temporal.internal:7233"}

    assert Settings(_env_file=None, **(base | tls)).temporal_tls_enabled  # type: ignore[call-arg, arg-type]


def test_production_accepts_a_loopback_temporal_without_tls() -> None:
    base = PRODUCTION | {"temporal_api_key": None, "temporal_address": "127.0.0.1:7233"}

    assert not Settings(_env_file=None, **base).temporal_tls_enabled  # type: ignore[call-arg, arg-type]


def test_mtls_needs_both_certificate_and_key() -> None:
    lines = refusals(temporal_tls_client_cert="/etc/dialler/c.pem")

    assert lines == ["temporal_tls_client_cert, temporal_tls_client_key: mTLS needs both the certificate and the key"]


def test_production_refuses_the_env_example_defaults() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=PROJECT_ROOT / ".env.example", environment="production")  # type: ignore[call-arg]

    assert "jwt_secret: still the development default" in str(caught.value)
    assert "twilio_auth_token: still the development default" in str(caught.value)


def test_the_env_example_runs_as_development_on_loopback() -> None:
    settings = Settings(_env_file=PROJECT_ROOT / ".env.example")  # type: ignore[call-arg]

    assert settings.environment is Environment.DEVELOPMENT
    assert not settings.is_production
    assert settings.temporal_tls_server_ca is None


@pytest.mark.parametrize(
    ("number", "drama"),
    [
        ("+441614960000", True),
        ("0161 496 0999", True),
        ("0161 496 1000", False),
        ("020 7946 0000", True),
        ("+447700900123", True),
        ("07700 901123", False),
        ("01632 960001", True),
        ("028 9649 6123", True),
        ("029 2018 0999", True),
        ("0113 496 0500", True),
        ("0808 157 0999", True),
        ("+441612345678", False),
        ("+14155550100", False),
    ],
)
def test_drama_ranges(number: str, drama: bool) -> None:
    assert is_drama_number(number) is drama


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIALLER_MAX_ATTEMPTS_PER_DAY", "2")
    monkeypatch.setenv("DIALLER_WEEKDAY_HOURS", '["09:00","19:00"]')

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.max_attempts_per_day == 2
    assert settings.weekday_hours == ("09:00", "19:00")


def test_unsafe_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIALLER_ABANDONED_COOLOFF_S", "3600")

    with pytest.raises(ValidationError, match="abandoned_cooloff_s"):
        Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql+asyncpg://u:pw@h:5432/db", "postgresql+asyncpg://u:***@h:5432/db"),
        ("redis://h:6379/0", "redis://h:6379/0"),
    ],
)
def test_mask_url_hides_passwords(url: str, masked: str) -> None:
    assert mask_url(url) == masked
