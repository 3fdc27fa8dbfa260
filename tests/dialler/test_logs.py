"""Log lines never carry a customer's phone number or a secret token, whatever logged them (our code,
uvicorn, a library), in the message, its arguments or an exception's text, in text and JSON formats."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import secrets
import socket
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from api.app import create_app
from dialler.agents.tokens import _new_refresh_token
from dialler.comms.magic_links import link_url, new_token
from dialler.config import LogFormat, Settings
from dialler.logs import RedactingFilter, configure_logging, handler_for, redact
from dialler.runtime import Stores

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsInR5cCI6ImFjY2VzcyJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.mark.parametrize(
    ("written", "masked"),
    [
        ("+447700900123", "+*********123"),
        ("+44 7700 900123", "+** **** ***123"),
        ("07700 900123", "***** ***123"),
        ("07700900123", "********123"),
        ("0044 7700 900 123", "**** **** *** 123"),
        ("+44 (0)20 7946 0018", "+** (*)** **** *018"),
        ("020 7946 0018", "*** **** *018"),
        ("number=%2B447700900123", "number=%2B*********123"),
        ("+33 6 12 34 56 78", "+** * ** ** *6 78"),
    ],
)
def test_uk_numbers_are_masked_in_every_form(written: str, masked: str) -> None:
    assert redact(f"calling {written} now") == f"calling {masked} now"


def test_tokens_are_replaced() -> None:
    refresh = _new_refresh_token()
    token = new_token()
    text = f"auth Bearer {JWT} refresh {refresh} link {link_url('https://portal.example.co.uk', token)} bare {token}"
    assert redact(text) == (
        "auth Bearer [jwt] refresh rt_[token] link https://portal.example.co.uk/m/[token] bare [token]"
    )


def test_ids_dates_codes_and_digests_are_left_alone() -> None:
    text = (
        "at 2026-12-07 04:10:21 call-session-1234567 user 12345678 error 21211 status 400 took 0.123456 s "
        f"digest {'ab12' * 16} sid CA{'0123456789abcdef' * 2} callback-user-42-2026-12-07T10:00:00+00:00"
    )
    assert redact(text) == text


def _emitted(settings: Settings, log_format: LogFormat, *log_args: object, exc: bool = False) -> str:
    handler = handler_for(settings.model_copy(update={"log_format": log_format}))
    stream = io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    log = logging.getLogger("dialler.test_logs")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        if exc:
            try:
                raise ValueError(f"no customer with mobile {log_args[1]}")
            except ValueError:
                log.exception(*log_args)  # type: ignore[arg-type]
        else:
            log.info(*log_args)  # type: ignore[arg-type]
    finally:
        log.removeHandler(handler)
    return stream.getvalue()


@pytest.mark.parametrize("log_format", [LogFormat.TEXT, LogFormat.JSON])
def test_every_handler_masks_message_arguments_and_exceptions(settings: Settings, log_format: LogFormat) -> None:
    refresh = _new_refresh_token()
    line = _emitted(settings, log_format, "text to %s with refresh %s", "07700 900123", refresh)
    assert "07700 900123" not in line and refresh not in line
    assert "***** ***123" in line and "rt_[token]" in line

    line = _emitted(settings, log_format, "lookup of %s failed", "+447700900123", exc=True)
    assert "+447700900123" not in line and "+*********123" in line
    assert "ValueError: no customer with mobile +*********123" in (
        json.loads(line)["exc_info"] if log_format is LogFormat.JSON else line
    )


def test_configure_logging_masks_on_a_handler_it_did_not_create(settings: Settings) -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    foreign = logging.StreamHandler(stream)  # e.g. one a library or a platform agent put there first
    saved = root.handlers[:]
    root.handlers = [foreign]
    try:
        configure_logging(settings)
        logging.getLogger("somewhere").warning("customer %s", "+447700900123")
    finally:
        root.handlers = saved
    assert any(isinstance(f, RedactingFilter) for f in foreign.filters)
    assert "+447700900123" not in stream.getvalue() and "+*********123" in stream.getvalue()


@pytest.fixture
def root_lines(settings: Settings) -> Iterator[io.StringIO]:
    """What the API process's root handler (configure_logging's) writes, in production's JSON."""
    handler = handler_for(settings.model_copy(update={"log_format": LogFormat.JSON}))
    stream = io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


async def test_a_real_request_line_with_a_number_and_a_magic_link_comes_out_masked(
    settings: Settings, stores: Stores, root_lines: io.StringIO
) -> None:
    # The real API under uvicorn, its loggers left to the root handler as api/__main__.py does, and the
    # access log turned on (as an operator chasing a problem might): the searched-for number in a query
    # string and a magic link's token in a path are real lines from uvicorn's own code.
    # Earlier tests in the session may have run uvicorn with its own log config, which disables and
    # detaches these loggers: give them back to the root handler for this test.
    saved = []
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, logger.disabled, logger.handlers[:], logger.level))
        logger.propagate, logger.disabled, logger.handlers = True, False, []
        logger.setLevel(logging.INFO)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_config=None, log_level="info", access_log=True, lifespan="on")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    token = secrets.token_urlsafe(32)
    try:
        for _ in range(400):  # uvicorn offers no event for "started", only the flag
            if server.started:
                break
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            searched = await http.get("/api/v1/compliance/do-not-call", params={"number": "+447700900123"})
            opened = await http.get(f"/m/{token}")
        assert searched.status_code == 401 and opened.status_code in (200, 404)
    finally:
        server.should_exit = True
        await serving
        sock.close()
        for logger, propagate, disabled, handlers, level in saved:
            logger.propagate, logger.disabled, logger.handlers = propagate, disabled, handlers
            logger.setLevel(level)

    lines = root_lines.getvalue()
    access = [json.loads(line) for line in lines.splitlines() if '"uvicorn.access"' in line]
    assert any("/api/v1/compliance/do-not-call?number=%2B*********123" in a["message"] for a in access), lines
    assert any("/m/[token]" in a["message"] for a in access), lines
    assert "447700900123" not in lines and token not in lines
