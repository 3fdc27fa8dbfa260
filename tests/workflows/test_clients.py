"""The workflow clients name workflows, signals, updates and queries by string (so that importing a
client never imports a workflow definition and, through it, the activities: tests/test_imports.py).
These names must be the ones the workflows register, or a start or signal fails only in production."""

from __future__ import annotations

import pytest
from temporalio import workflow

from workflows import call_session_client, callback_client, magic_link_client, queue_rebuild_client, sms_client
from workflows.call_session import CallSessionWorkflow
from workflows.callback import CallbackWorkflow
from workflows.magic_link import MagicLinkWorkflow
from workflows.queue_rebuild import QueueRebuildWorkflow
from workflows.sms import SendSmsWorkflow


def definition(cls: type) -> workflow._Definition:
    return workflow._Definition.must_from_class(cls)


@pytest.mark.parametrize(
    ("client_name", "cls"),
    [
        (callback_client.WORKFLOW, CallbackWorkflow),
        (magic_link_client.WORKFLOW, MagicLinkWorkflow),
        (sms_client.WORKFLOW, SendSmsWorkflow),
        (queue_rebuild_client.WORKFLOW, QueueRebuildWorkflow),
        (call_session_client.WORKFLOW, CallSessionWorkflow),
    ],
)
def test_a_client_names_its_workflow_as_registered(client_name: str, cls: type) -> None:
    assert client_name == definition(cls).name


def test_the_signals_updates_and_queries_the_clients_name_exist() -> None:
    callback = definition(CallbackWorkflow)
    assert {callback_client.REBOOK_SIGNAL, callback_client.CANCEL_SIGNAL, callback_client.COMPLETE_SIGNAL} <= set(
        callback.signals
    )
    assert callback_client.RESCHEDULE_UPDATE in callback.updates
    assert magic_link_client.USED_SIGNAL in definition(MagicLinkWorkflow).signals
    session = definition(CallSessionWorkflow)
    assert {call_session_client.CALL_STATUS_SIGNAL, call_session_client.ABANDONED_SIGNAL} <= set(session.signals)
    assert call_session_client.VIEW_QUERY in session.queries
