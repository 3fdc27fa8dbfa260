"""``dialler fallback-twiml``: the information message an operator publishes as a TwiML Bin, made
before production's settings (which require the Bin's URL) can load."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from workers.cli import main


def test_fallback_twiml_is_the_information_message_with_who_called_and_the_number_twice(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIALLER_ENVIRONMENT", "production")  # nothing else set: settings would refuse

    assert main(["fallback-twiml", "--company-name", "Acme Claims", "--caller-id", "+441612345678"]) == 0

    root = ET.fromstring(capsys.readouterr().out.strip())
    said = " ".join(say.text or "" for say in root.iter("Say"))
    assert root.tag == "Response" and root[-1].tag == "Hangup"
    assert "a call from Acme Claims" in said and said.count("0 1 6 1, 2 3 4, 5 6 7 8") == 2
