from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from dialler.config import PROJECT_ROOT, Settings, mask_url


def test_every_setting_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^DIALLER_([A-Z0-9_]+)=", (PROJECT_ROOT / ".env.example").read_text(), re.M))

    assert documented == {name.upper() for name in Settings.model_fields}


def test_production_refuses_development_secrets() -> None:
    with pytest.raises(ValidationError, match="jwt_secret"):
        Settings(_env_file=None, environment="production")  # type: ignore[call-arg]


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
