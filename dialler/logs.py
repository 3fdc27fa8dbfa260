"""Logging set-up shared by every process.

* development and test: one readable line per record;
* production (or ``log_format=json``): one JSON object per line for the log pipeline, with the ids
  that tie a line to its request, agent and workflow (``request_id``, ``agent_id``, ``workflow_id``,
  ``activity``), and phone numbers masked in the message (dialler/integrations/masking.py): logs go
  to places with wider access than the customer database.

The ids come from context, not from each call site: the API sets the request's state for the task
that serves it (:func:`bind_request`, api/middleware.py), and Temporal's activity and workflow
loggers carry the workflow id of the code that logged.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import MutableMapping
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from dialler.config import LogFormat, Settings
from dialler.integrations.masking import mask_phones_in

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
    json = log_format(settings) == LogFormat.JSON
    handler.setFormatter(PrivateJsonFormatter() if json else logging.Formatter(FORMAT))
    return handler


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), handlers=[handler_for(settings)])
    # Third-party chatter at INFO drowns the dialler's own lines.
    for noisy in ("botocore", "boto3", "urllib3", "httpx", "httpcore", "temporalio.activity", "twilio.http_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
