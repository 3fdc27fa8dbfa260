"""Logging set-up shared by every process.

* development and test: one readable line per record;
* production (or ``log_format=json``): one JSON object per line for the log pipeline, with the ids
  that tie a line to its request, agent and workflow (``request_id``, ``agent_id``, ``workflow_id``,
  ``activity``).

Every handler carries :class:`RedactingFilter` (text and JSON alike): UK phone numbers, JWTs, refresh
tokens and magic-link tokens are masked in the message, its arguments and the exception text before any
formatter sees them. Logs go to places with wider access than the customer database.

The ids come from context, not from each call site: the API sets the request's state for the task
that serves it (:func:`bind_request`, api/middleware.py), and Temporal's activity and workflow
loggers carry the workflow id of the code that logged.
"""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import MutableMapping
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from dialler.config import LogFormat, Settings
from dialler.integrations.masking import mask_phone, mask_phones_in

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_request_state: contextvars.ContextVar[MutableMapping[str, Any] | None] = contextvars.ContextVar(
    "dialler_request_state", default=None
)


def bind_request(state: MutableMapping[str, Any]) -> contextvars.Token[MutableMapping[str, Any] | None]:
    """Log lines of the current task carry this request's ``request_id`` and ``agent_id`` (read when
    each line is written: the agent is known only once the token has been checked)."""
    return _request_state.set(state)


def unbind_request(token: contextvars.Token[MutableMapping[str, Any] | None]) -> None:
    _request_state.reset(token)


class ContextFilter(logging.Filter):
    """Adds the ids of the request, agent, workflow and activity the record was logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        state = _request_state.get()
        if state is not None:
            record.request_id = state.get("request_id")
            record.agent_id = state.get("agent_id")
        workflow = getattr(record, "temporal_workflow", None) or getattr(record, "temporal_activity", None)
        if isinstance(workflow, dict):
            record.workflow_id = workflow.get("workflow_id")
            if "activity_type" in workflow:
                record.activity = workflow["activity_type"]
        return True


# A UK number as people and systems write it: +44 or 0044 (also URL-encoded, %2B44, as in an access
# log's query string) or a national 0, then 9-10 more digits with optional spaces, dashes or "(0)".
_UK_PHONE = re.compile(
    r"(?<![0-9])(?:(?:\+|%2B|00)\s?44\s?(?:\(0\)\s?)?|(?<![A-Za-z0-9_.:])0)\d(?:[\s-]?\d){8,9}(?![0-9])",
    re.IGNORECASE,
)
# Any other E.164 number (a customer abroad): a + and 9-15 digits.
_E164 = re.compile(r"(?<![0-9A-Za-z])\+\d(?:[\s-]?\d){8,14}(?![0-9])")
# A JWT: three base64url segments, the first a JSON header ('{"' is 'eyJ' in base64).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
# Refresh tokens are ``rt_`` + token_urlsafe(32) (dialler/agents/tokens.py).
_REFRESH = re.compile(r"rt_[A-Za-z0-9_-]{20,}")
# Magic links are <portal>/m/<token_urlsafe(32)> (dialler/comms/magic_links.py): the path part, and a
# bare token (43 URL-safe characters mixing cases and digits, which ids and hex digests never do).
_LINK_PATH = re.compile(r"/m/[A-Za-z0-9_-]+")
_BARE_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*[A-Z])(?=[A-Za-z0-9_-]*[a-z])(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])"
)


def _mask_number(match: re.Match[str]) -> str:
    number = match.group(0)
    if number[:3].upper() == "%2B":  # keep the escape readable: %2B is a "+", not two digits of the number
        return "%2B" + mask_phone(number[3:])
    return mask_phone(number)


def redact(text: str) -> str:
    """``text`` with phone numbers masked (last three digits kept, as everywhere else) and tokens replaced."""
    text = _JWT.sub("[jwt]", text)
    text = _REFRESH.sub("rt_[token]", text)
    text = _LINK_PATH.sub("/m/[token]", text)
    text = _BARE_TOKEN.sub("[token]", text)
    text = _UK_PHONE.sub(_mask_number, text)
    return _E164.sub(lambda m: mask_phone(m.group(0)), text)


class RedactingFilter(logging.Filter):
    """Masks personal data in a record before any formatter or handler sees it.

    The message is rendered with its arguments and the result masked (an argument may be a phone number
    or an exception), and the exception is rendered to text and masked; the record keeps only the masked
    forms, so a later formatter (text or JSON) has nothing unmasked to fall back to.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call site: log its template, masked, rather than lose the line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class PrivateJsonFormatter(JsonFormatter):
    """JSON lines without phone numbers in the message or the exception text."""

    _IDS = ("request_id", "agent_id", "workflow_id", "activity")

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger", "asctime": "time"},
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["message"] = mask_phones_in(str(log_data.get("message", "")))
        if "exc_info" in log_data:
            log_data["exc_info"] = mask_phones_in(str(log_data["exc_info"]))
        # Temporal's context dicts repeat the ids and add the task queue and attempt; keep ours flat.
        for noisy in ("temporal_workflow", "temporal_activity", "color_message"):
            log_data.pop(noisy, None)
        for name in self._IDS:
            value = getattr(record, name, None)
            if value is not None:
                log_data[name] = value


def log_format(settings: Settings) -> LogFormat:
    if settings.log_format is not None:
        return settings.log_format
    return LogFormat.JSON if settings.is_production else LogFormat.TEXT


def handler_for(settings: Settings) -> logging.Handler:
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    json = log_format(settings) == LogFormat.JSON
    handler.setFormatter(PrivateJsonFormatter() if json else logging.Formatter(FORMAT))
    return handler


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler_for(settings)])
    # Whatever else put a handler on the root logger (basicConfig keeps an existing one) masks too.
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    # Third-party chatter at INFO drowns the dialler's own lines.
    for noisy in ("botocore", "boto3", "urllib3", "httpx", "httpcore", "temporalio.activity", "twilio.http_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
