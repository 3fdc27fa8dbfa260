"""Temporal search attributes: how supervisors find workflows in the Temporal Web UI.

One home for their names and types; ``dialler temporal-setup`` registers them from here (the tests'
dev server gets them as start-up flags)."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair

AGENT_ID = SearchAttributeKey.for_keyword("AgentId")
USER_ID = SearchAttributeKey.for_keyword("UserId")
QUEUE_TYPE = SearchAttributeKey.for_keyword("QueueType")
CALL_STATUS = SearchAttributeKey.for_keyword("CallStatus")
DISPOSITION = SearchAttributeKey.for_keyword("Disposition")
CALLBACK_STATUS = SearchAttributeKey.for_keyword("CallbackStatus")
CALLBACK_DUE = SearchAttributeKey.for_datetime("CallbackDue")
# A queue's pacer: the mode the governor lets it dial in now (preview, progressive, predictive), or
# paused (at the ceiling), or stopped.
PACING_MODE = SearchAttributeKey.for_keyword("PacingMode")

ALL = (AGENT_ID, USER_ID, QUEUE_TYPE, CALL_STATUS, DISPOSITION, CALLBACK_STATUS, CALLBACK_DUE, PACING_MODE)


def call_session_start(*, user_id: int, agent_id: int | None, queue: str) -> list[SearchAttributePair[str]]:
    """What a call session is filed under from its start (``reserved``): set by the starter with the
    start itself, so the session need not upsert them (an event and a visibility write each). A pooled
    call has no agent (``None``) until the answer claims one."""
    return ([] if agent_id is None else [SearchAttributePair(AGENT_ID, str(agent_id))]) + [
        SearchAttributePair(USER_ID, str(user_id)),
        SearchAttributePair(QUEUE_TYPE, queue),
        SearchAttributePair(CALL_STATUS, "reserved"),
    ]


# The names `temporal server start-dev --search-attribute NAME=TYPE` expects.
_CLI_TYPES = {"KEYWORD": "Keyword", "DATETIME": "Datetime", "INT": "Int", "TEXT": "Text", "BOOL": "Bool"}


def cli_flags() -> list[str]:
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={_CLI_TYPES[key.indexed_value_type.name]}"]
    return flags


async def register(client: Client, namespace: str) -> list[str]:
    """Add the search attributes the namespace lacks (``dialler temporal-setup``). Idempotent: existing
    attributes of the right type are left alone; one of another type is an error naming it (Temporal
    cannot change a type: the operator must remove it first). Returns the names added."""
    listed = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=namespace))
    existing = dict(listed.custom_attributes)
    wrong = [
        f"{key.name} is {IndexedValueType.Name(existing[key.name])}, expected "
        f"{IndexedValueType.Name(IndexedValueType.ValueType(key.indexed_value_type))}"
        for key in ALL
        if key.name in existing and existing[key.name] != int(key.indexed_value_type)
    ]
    if wrong:
        raise ValueError("search attributes of the wrong type: " + "; ".join(wrong))
    missing = {key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in ALL if key.name not in existing}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)
