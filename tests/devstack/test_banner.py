"""What `make run` tells a new user: every port, how the emulated phone lines behave, and at night how to
get a demo that has someone to call (`make demo`, which shifts the dialler's clock into open hours)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from devstack.stack import Endpoints, banner, demo_offset_s
from dialler import clock
from dialler.compliance import gates
from dialler.config import Settings


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _offset_to_sunday_night() -> int:
    london = datetime.now(UTC).astimezone(ZoneInfo("Europe/London"))
    sunday = (london + timedelta(days=(6 - london.weekday()) % 7)).replace(hour=1, minute=35, second=0, microsecond=0)
    return int((sunday - london).total_seconds())


def test_the_banner_lists_every_port_and_the_emulated_lines() -> None:
    from devstack.stack import EMULATOR_PORT

    settings = _settings()
    text = banner(settings, Endpoints(settings.replica_url, twilio_api_base_url=f"http://127.0.0.1:{EMULATOR_PORT}"))
    for port in ("8000", "7233", "8233", "19324", "13306", "5432", "6379", "9465"):
        assert f":{port}" in text, port
    assert "…7 ring out (no answer), …8 are busy, …9 reach voicemail; every other number answers" in text
    assert len(text.splitlines()) < 35


def test_at_night_the_banner_says_nobody_will_be_called_and_how_to_demo_now() -> None:
    night = _settings(clock_offset_s=_offset_to_sunday_night())
    text = banner(night, Endpoints(night.replica_url))
    assert "Outside calling hours" in text and "`make demo`" in text


def test_make_demo_shifts_the_clock_into_calling_hours() -> None:
    settings = _settings()
    shifted = settings.model_copy(update={"clock_offset_s": demo_offset_s(settings)})
    assert gates.calling_window(clock.now(shifted), gates.CallingRules.from_settings(shifted)).allowed
    text = banner(shifted, Endpoints(shifted.replica_url))
    assert "Outside calling hours" not in text


def test_make_run_points_the_twilio_sdk_at_the_emulator_and_the_banner_lists_it() -> None:
    from devstack.stack import EMULATOR_PORT, uses_emulator

    settings = _settings()
    assert uses_emulator(settings)  # a development stack with nothing set talks to the emulator
    endpoints = Endpoints(settings.replica_url, twilio_api_base_url=f"http://127.0.0.1:{EMULATOR_PORT}")
    env = endpoints.env()
    assert env["DIALLER_TWILIO_API_BASE_URL"] == f"http://127.0.0.1:{EMULATOR_PORT}"
    children = Settings(_env_file=None, **{k.removeprefix("DIALLER_").lower(): v for k, v in env.items()})  # type: ignore[call-arg, arg-type]
    assert (
        children.telephony_mode.value == "twilio" and children.twilio_api_base_url == env["DIALLER_TWILIO_API_BASE_URL"]
    )
    text = banner(settings, endpoints)
    assert f"Twilio (emu.) 127.0.0.1:{EMULATOR_PORT}" in text
    assert "Twilio emulator, by the number's last digit: …7 ring out (no answer), …8 are busy" in text
    # Pointed at a Twilio (its own emulator, or a real account): left alone, and the banner says so.
    assert not uses_emulator(_settings(twilio_api_base_url="http://127.0.0.1:4010"))
    real = _settings(twilio_account_sid="AC" + "1" * 32)
    assert not uses_emulator(real)
    assert "Phone lines   Twilio (the account in your settings): real calls" in banner(
        real, Endpoints(real.replica_url)
    )
