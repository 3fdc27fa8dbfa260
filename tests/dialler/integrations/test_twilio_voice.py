"""Access tokens, TwiML and webhook signatures: everything Twilio Voice needs that works offline."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import jwt
import pytest

from dialler.integrations import twilio_voice as tv
from tests.support.telephony import (
    ACCOUNT_SID,
    API_KEY_SECRET,
    API_KEY_SID,
    TWIML_APP_SID,
    make_settings,
)

SETTINGS = make_settings(public_base_url="https://dialler.example.co.uk")
CUSTOMER = "+447700900123"
STATUS_URL = "https://dialler.example.co.uk/api/v1/voice/status?session=call-42"


def _xml(document: str) -> ET.Element:
    return ET.fromstring(document)


# --- Access token --------------------------------------------------------------------------------


def test_access_token_carries_the_voice_grant_identity_and_ttl() -> None:
    token = tv.voice_access_token(SETTINGS, "agent_7", ttl_s=900)

    claims = jwt.decode(token, API_KEY_SECRET, algorithms=["HS256"])
    header = jwt.get_unverified_header(token)

    assert header["cty"] == "twilio-fpa;v=1"
    assert claims["iss"] == API_KEY_SID and claims["sub"] == ACCOUNT_SID
    assert claims["grants"]["identity"] == "agent_7"
    assert claims["grants"]["voice"] == {
        "incoming": {"allow": True},
        "outgoing": {"application_sid": TWIML_APP_SID},
    }
    assert abs(claims["exp"] - (time.time() + 900)) <= 5


def test_access_token_does_not_verify_with_another_secret() -> None:
    token = tv.voice_access_token(SETTINGS, "agent_7", ttl_s=60)

    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "some-other-secret-0123456789abcdef", algorithms=["HS256"])


@pytest.mark.parametrize("identity", ["", "agent-7", "priya@example.co.uk", "a" * 122])
def test_identities_twilio_client_would_refuse_are_refused(identity: str) -> None:
    with pytest.raises(ValueError):
        tv.voice_access_token(SETTINGS, identity, ttl_s=60)


def test_agent_identity_is_a_valid_client_name() -> None:
    assert tv.agent_identity(7) == "agent_7"
    assert tv.agent_identity("3f2a-9c") == "agent_3f2a_9c"


# --- TwiML ---------------------------------------------------------------------------------------


def test_bridge_to_agent_dials_the_agents_browser() -> None:
    root = _xml(tv.bridge_to_agent("agent_7", STATUS_URL, action_url="https://dialler.example.co.uk/twiml/after"))

    [dial] = list(root)
    assert dial.get("record") == "record-from-answer-dual"
    assert dial.get("action") == "https://dialler.example.co.uk/twiml/after"
    [client] = list(dial)
    assert client.tag == "Client" and client.text == "agent_7"
    assert client.get("statusCallback") == STATUS_URL


def test_bridge_to_agent_reports_the_agents_leg_only_when_asked() -> None:
    """The call sessions' answer TwiML asks for none: the session goes by the customer's leg."""
    [dial] = list(_xml(tv.bridge_to_agent("agent_7", action_url="https://dialler.example.co.uk/twiml/after")))
    [client] = list(dial)
    assert client.text == "agent_7" and client.get("statusCallback") is None


def test_abandoned_message_names_the_company_and_the_number_to_call_back() -> None:
    document = tv.abandoned_message("RMC Claims & Co", "+441615550100")

    root = _xml(document)  # the ampersand is escaped: still valid XML
    says = [el.text or "" for el in root.findall("Say")]
    assert "RMC Claims & Co" in says[0]
    assert "0 1 6 1, 5 5 5, 0 1 0 0" in says[0] and "0 1 6 1, 5 5 5, 0 1 0 0" in says[1]
    assert list(root)[-1].tag == "Hangup"
    assert "<Dial" not in document


def test_speakable_number() -> None:
    assert tv.speakable_number("+447700900123") == "0 7 7 0 0, 9 0 0 1 2 3"
    assert tv.speakable_number("not a number") == ""


def test_hold_message_and_reject() -> None:
    hold = _xml(tv.hold_message())
    assert [el.tag for el in hold] == ["Say", "Pause"]

    assert [el.tag for el in _xml(tv.reject())] == ["Reject"]
    assert [el.tag for el in _xml(tv.reject("We cannot take this call."))] == ["Say", "Hangup"]


# --- Signatures ----------------------------------------------------------------------------------

PARAMS = {"CallSid": "CA" + "1" * 32, "CallStatus": "ringing", "To": CUSTOMER, "SequenceNumber": "1"}


def test_a_correctly_signed_request_is_accepted() -> None:
    signature = tv.sign(SETTINGS, STATUS_URL, PARAMS)

    assert tv.validate_signature(SETTINGS, STATUS_URL, PARAMS, signature)
    # Twilio may sign https URLs with or without the default port.
    with_port = STATUS_URL.replace(".co.uk/", ".co.uk:443/")
    assert tv.validate_signature(SETTINGS, with_port, PARAMS, signature)


@pytest.mark.parametrize("signature", [None, "", "bm90IGEgc2lnbmF0dXJl"])
def test_a_missing_or_wrong_signature_is_refused(signature: str | None) -> None:
    assert not tv.validate_signature(SETTINGS, STATUS_URL, PARAMS, signature)


def test_a_tampered_request_is_refused() -> None:
    signature = tv.sign(SETTINGS, STATUS_URL, PARAMS)

    assert not tv.validate_signature(SETTINGS, STATUS_URL, {**PARAMS, "CallStatus": "completed"}, signature)
    assert not tv.validate_signature(SETTINGS, STATUS_URL, {**PARAMS, "Extra": "1"}, signature)
    assert not tv.validate_signature(SETTINGS, STATUS_URL.replace("call-42", "call-43"), PARAMS, signature)
    other_account = make_settings(twilio_auth_token="another-auth-token")
    assert not tv.validate_signature(other_account, STATUS_URL, PARAMS, signature)


def test_repeated_keys_are_signed_in_every_shape() -> None:
    pairs = [("StatusCallbackEvent", "ringing"), ("StatusCallbackEvent", "answered"), ("To", CUSTOMER)]
    signature = tv.sign(SETTINGS, STATUS_URL, pairs)

    as_mapping = {"StatusCallbackEvent": ["answered", "ringing"], "To": CUSTOMER}
    assert tv.validate_signature(SETTINGS, STATUS_URL, as_mapping, signature)
    assert tv.validate_signature(SETTINGS, STATUS_URL, pairs, signature)
    assert not tv.validate_signature(SETTINGS, STATUS_URL, pairs[1:], signature)


def test_starlette_form_data_is_accepted() -> None:
    from starlette.datastructures import FormData

    form = FormData([("CallSid", "CA" + "2" * 32), ("CallStatus", "completed")])
    signature = tv.sign(SETTINGS, STATUS_URL, dict(form))

    assert tv.validate_signature(SETTINGS, STATUS_URL, form, signature)
