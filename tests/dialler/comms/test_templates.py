"""SMS templates, character sets and segment counting, as carriers bill them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dialler.comms.errors import InvalidSmsBody, SmsTooLong, TemplateError
from dialler.comms.templates import (
    AGENT_TEMPLATES,
    MAX_SEGMENTS,
    Encoding,
    TemplateContext,
    TemplateName,
    check_body,
    describe_validity,
    measure,
    render,
    smart_encode,
)

CONTEXT = TemplateContext(company_name="RMC Claims", callback_number="+441614960000")
URL = "https://portal.example.co.uk/m/" + "A" * 43
PARAMS = {"url": URL, "validity": "72 hours", "document": "bank_statement", "due_at": "2025-06-04T13:30:00+00:00"}


@pytest.mark.parametrize(
    ("body", "encoding", "units", "segments"),
    [
        ("a" * 160, Encoding.GSM7, 160, 1),
        ("a" * 161, Encoding.GSM7, 161, 2),
        ("a" * 306, Encoding.GSM7, 306, 2),
        ("a" * 307, Encoding.GSM7, 307, 3),
        ("€" * 80, Encoding.GSM7, 160, 1),  # the extension table counts double
        ("€" * 81, Encoding.GSM7, 162, 2),
        ("é£ñ" * 50, Encoding.GSM7, 150, 1),  # in the GSM basic set
        ("ć" * 70, Encoding.UCS2, 70, 1),
        ("ć" * 71, Encoding.UCS2, 71, 2),
        ("ć" * 134, Encoding.UCS2, 134, 2),
        ("ć" * 135, Encoding.UCS2, 135, 3),
        ("a" * 60 + "😀" * 5, Encoding.UCS2, 70, 1),  # an emoji is two UTF-16 units
        ("", Encoding.GSM7, 0, 1),
    ],
)
def test_measure_counts_segments_like_the_carriers(body: str, encoding: Encoding, units: int, segments: int) -> None:
    length = measure(body)

    assert (length.encoding, length.units, length.segments) == (encoding, units, segments)


def test_smart_encoding_keeps_pasted_punctuation_in_gsm7() -> None:
    pasted = "It\u2019s \u201cdone\u201d \u2013 thanks\u2026"

    assert measure(pasted).encoding is Encoding.UCS2
    assert smart_encode(pasted) == 'It\'s "done" - thanks...'
    assert measure(smart_encode(pasted)).encoding is Encoding.GSM7


def test_check_body_refuses_empty_too_long_and_control_characters() -> None:
    with pytest.raises(InvalidSmsBody, match="empty"):
        check_body("   \n")
    with pytest.raises(InvalidSmsBody, match="U\\+0007"):
        check_body("ding\a")
    assert check_body("a" * 153 * MAX_SEGMENTS).segments == MAX_SEGMENTS
    with pytest.raises(SmsTooLong) as gsm:
        check_body("a" * (153 * MAX_SEGMENTS + 1))
    assert gsm.value.details["segments"] == MAX_SEGMENTS + 1
    with pytest.raises(SmsTooLong, match="UCS-2"):
        check_body("ć" * (67 * MAX_SEGMENTS + 1))


@pytest.mark.parametrize("name", list(TemplateName))
def test_every_template_renders_in_gsm7_within_two_segments_with_the_company_and_stop(name: TemplateName) -> None:
    body = render(name, CONTEXT, PARAMS)

    length = check_body(body)
    assert length.encoding is Encoding.GSM7 and length.segments <= 2, (name, length)
    assert body.startswith("RMC Claims:")
    assert "STOP" in body or "START" in body
    assert "{" not in body


def test_templates_fill_in_time_link_document_and_number() -> None:
    assert "Wed 4 Jun at 14:30" in render(TemplateName.CALLBACK_CONFIRMATION, CONTEXT, PARAMS)  # BST
    assert "we will call you at Wed 4 Jun at 14:30" in render(TemplateName.CALLBACK_REMINDER, CONTEXT, PARAMS)
    upload = render(TemplateName.MAGIC_LINK_UPLOAD, CONTEXT, PARAMS)
    assert URL in upload and "bank statements" in upload and "72 hours" in upload
    assert "0161 496 0000" in render(TemplateName.MISSED_CALL, CONTEXT, {})
    winter = {"due_at": datetime(2025, 1, 8, 9, 0, tzinfo=UTC).isoformat()}
    assert "Wed 8 Jan at 09:00" in render(TemplateName.CALLBACK_CONFIRMATION, CONTEXT, winter)


def test_a_shifted_demo_clock_names_the_time_the_agent_booked_on() -> None:
    """Due times are stored real; a demo stack's clock offset (dialler.clock) is how the agent and the
    screens see them, so the customer's text names the same time: 01:45 real is 10:15 on a +8.5 h demo."""
    due = {"due_at": datetime(2025, 1, 8, 1, 45, tzinfo=UTC).isoformat()}
    shifted = TemplateContext(company_name="RMC Claims", callback_number="+441614960000", clock_offset_s=30_600)
    assert "Wed 8 Jan at 10:15" in render(TemplateName.CALLBACK_CONFIRMATION, shifted, due)
    assert "Wed 8 Jan at 01:45" in render(TemplateName.CALLBACK_CONFIRMATION, CONTEXT, due)


def test_render_refuses_unknown_templates_and_missing_parameters() -> None:
    with pytest.raises(TemplateError, match="unknown"):
        render("birthday_greeting", CONTEXT, {})
    with pytest.raises(TemplateError, match="due_at"):
        render(TemplateName.CALLBACK_REMINDER, CONTEXT, {})
    with pytest.raises(TemplateError, match="time zone"):
        render(TemplateName.CALLBACK_REMINDER, CONTEXT, {"due_at": "2025-06-04T13:30:00"})


def test_agents_may_send_only_the_missed_call_template() -> None:
    assert {TemplateName.MISSED_CALL} == AGENT_TEMPLATES


@pytest.mark.parametrize(
    ("seconds", "text"), [(72 * 3600, "72 hours"), (2 * 3600, "2 hours"), (3600, "60 minutes"), (30, "1 minute")]
)
def test_describe_validity(seconds: int, text: str) -> None:
    assert describe_validity(seconds) == text
