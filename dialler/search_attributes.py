"""Temporal search attributes: how supervisors find workflows in the Temporal Web UI.

One home for their names and types; the run and test scripts register them from here."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

AGENT_ID = SearchAttributeKey.for_keyword("AgentId")
USER_ID = SearchAttributeKey.for_keyword("UserId")
QUEUE_TYPE = SearchAttributeKey.for_keyword("QueueType")
CALL_STATUS = SearchAttributeKey.for_keyword("CallStatus")
DISPOSITION = SearchAttributeKey.for_keyword("Disposition")
CALLBACK_STATUS = SearchAttributeKey.for_keyword("CallbackStatus")
CALLBACK_DUE = SearchAttributeKey.for_datetime("CallbackDue")

ALL = (AGENT_ID, USER_ID, QUEUE_TYPE, CALL_STATUS, DISPOSITION, CALLBACK_STATUS, CALLBACK_DUE)

# The names `temporal server start-dev --search-attribute NAME=TYPE` expects.
_CLI_TYPES = {"KEYWORD": "Keyword", "DATETIME": "Datetime", "INT": "Int", "TEXT": "Text", "BOOL": "Bool"}


def cli_flags() -> list[str]:
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={_CLI_TYPES[key.indexed_value_type.name]}"]
    return flags
