"""Returned-call activities (InboundCallWorkflow): the session opened when the agent answers and each
step written to the call's rows. Idempotent: the session's id is derived from Twilio's CallSid, rows
are inserted once and each timestamp is written only while it is empty. The agent's presence, the
hang-up and the outcome reuse the call session's own activities (one home for each)."""

from __future__ import annotations

from temporalio import activity

from dialler.calls import inbound
from dialler.calls.returned import OpenReturnedSession, ReturnedCallStep
from dialler.queues.runtime import queue_engine
from dialler.runtime import Stores


class InboundCallActivities:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    @activity.defn
    async def open_returned_session(self, input: OpenReturnedSession) -> bool:
        """The session of a returned call the agent answered; False when the customer is in another
        open session (a colleague holds them), and the call goes on without one. While the customer
        is on the phone with us they are in no queue: nobody else is offered them, and the outcome
        places them again by the rules (finish_session)."""
        mine = await inbound.open_returned_session(self.stores.postgres, call=input)
        if mine:
            await queue_engine(self.stores).remove(input.user_id)
        return mine

    @activity.defn
    async def record_returned_step(self, input: ReturnedCallStep) -> None:
        await inbound.record_step(self.stores.postgres, input)
