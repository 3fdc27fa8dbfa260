import dataclasses
import random

import pytest

from dialler.queues import phones
from dialler.queues.phones import PHONE_REASONS, PhoneCheck, normalise_phone


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("07700 900123", "+447700900123"),
        ("+447700900123", "+447700900123"),
        ("447700900123", "+447700900123"),
        ("0044 7700 900123", "+447700900123"),
        ("+44 (0)7700 900123", "+447700900123"),
        ("07700-900-123", "+447700900123"),
        ("07700.900.123", "+447700900123"),
        ("  07700 900123\n", "+447700900123"),
        ("07700\u00a0900123", "+447700900123"),  # non-breaking space pasted from a web form
        (
            "\uff10\uff17\uff17\uff10\uff10 \uff19\uff10\uff10\uff11\uff12\uff13",
            "+447700900123",
        ),  # full-width
        ("tel:+447700900123", "+447700900123"),
        ("7700900123", "+447700900123"),  # trunk 0 forgotten
        ("(0161) 496 0000", "+441614960000"),
        ("0161 496 0000", "+441614960000"),
        ("+44 (0)161 496 0000", "+441614960000"),
        ("020 7946 0000", "+442079460000"),
        ("028 9018 1234", "+442890181234"),  # Northern Ireland is the UK
        ("0131 496 0000", "+441314960000"),  # Scotland
        ("07400 123456", "+447400123456"),
        ("056 1234 5678", "+445612345678"),  # VoIP
        ("01632 960123", "+441632960123"),  # Ofcom drama range
        ("+44 7700 900123 ext. 5", "+447700900123"),  # extension is dropped: we dial the line
    ],
)
def test_accepts_uk_numbers_in_every_usual_shape(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == PhoneCheck(e164, None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("abc", "unparseable"),
        ("n/a", "unparseable"),
        ("+44", "unparseable"),
        ("123", "too_short"),
        ("0044", "too_short"),
        ("07700 90012", "invalid"),
        ("0770090012345678", "too_long"),
        ("9" * 65, "too_long"),  # longer than anything the replica column holds
        ("07700 900123 / 07400 123456", "too_long"),  # two numbers in one field
        ("+33 6 12 34 56 78", "not_uk"),
        ("0033 6 12 34 56 78", "not_uk"),
        ("+1 202 555 0143", "not_uk"),
        ("+353 1 234 5678", "not_uk"),
        ("01534 123456", "not_uk"),  # Jersey
        ("01481 712345", "not_uk"),  # Guernsey
        ("07624 123456", "not_uk"),  # Isle of Man mobile
        ("07911 123456", "not_uk"),  # a Guernsey block inside a GB-looking mobile range
        ("0800 123 4567", "unsupported_type"),  # freephone
        ("0901 123 4567", "unsupported_type"),  # premium rate
        ("0871 123 4567", "unsupported_type"),  # shared cost
        ("0345 123 4567", "unsupported_type"),  # UAN
        ("070 1234 5678", "unsupported_type"),  # personal number
        ("07640 123456", "unsupported_type"),  # pager
    ],
)
def test_rejects_with_a_stable_reason(raw: str | None, reason: str) -> None:
    check = normalise_phone(raw)
    assert check == PhoneCheck(None, reason)
    assert not check.ok
    assert check.reason_text == PHONE_REASONS[reason]


@pytest.mark.parametrize("raw", ["07700 900123", "+447700900999", "01632 960000"])
def test_fictional_ranges_can_be_refused(raw: str) -> None:
    assert normalise_phone(raw).ok
    assert normalise_phone(raw, allow_fictional=False) == PhoneCheck(None, "invalid")


@pytest.mark.parametrize("raw", ["07700 901000", "07700 899999"])
def test_fictional_range_is_exactly_900000_to_900999(raw: str) -> None:
    assert not normalise_phone(raw).ok


def test_ok_and_reason_text_of_an_accepted_number() -> None:
    check = normalise_phone("07400 123456")
    assert check.ok
    assert check.reason_text is None


def test_result_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        normalise_phone("07700 900123").e164 = "+440"  # type: ignore[misc]


def test_repeated_numbers_are_served_from_the_cache() -> None:
    raw = "07700 900777"
    normalise_phone(raw)
    hits = normalise_phone.cache_info().hits
    assert normalise_phone(raw).e164 == "+447700900777"
    assert normalise_phone.cache_info().hits == hits + 1
    assert normalise_phone.cache_info().maxsize == phones.CACHE_SIZE


def _random_raw(rng: random.Random) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(8, 11)))
    prefix = rng.choice(["0", "+44", "44", "0044", "+44 (0)", "", "07", "+447", "01", "02", "03", "08", "09"])
    sep = rng.choice(["", " ", "-"])
    return prefix + sep + digits[:4] + sep + digits[4:]


def test_fast_path_agrees_with_phonenumbers_on_random_numbers() -> None:
    # The fast path may only accept what the slow (library) path accepts, with the same E.164.
    rng = random.Random(20260329)
    accepted_fast = 0
    for _ in range(3_000):
        raw = _random_raw(rng)
        for allow in (True, False):
            fast = normalise_phone.__wrapped__(raw, allow_fictional=allow)
            slow = phones._slow_path(raw, allow)
            assert fast == slow, raw
            accepted_fast += fast.ok
    assert accepted_fast > 150  # the sample really exercises acceptance, not only rejections
