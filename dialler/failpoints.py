"""Named points where a worker stops, for the crash tests that prove a call or a text is never sent
twice (tests/e2e/test_ring_once.py): the worker logs that it reached the point, then waits for ever, and
the test SIGKILLs it there. ``Settings.fail_points`` names them; production refuses any (config.py).

    dial.before_create   the dial is recorded, Twilio not asked yet
    dial.before_store    Twilio placed the call and gave its sid, which is not stored yet
    sms.before_create    the text's attempt is recorded, Twilio not asked yet
    sms.before_store     Twilio took the text, its sid is not stored yet
"""

from __future__ import annotations

import asyncio
import logging

from dialler.config import Settings

log = logging.getLogger(__name__)


async def reach(settings: Settings, name: str) -> None:
    if name not in settings.fail_points:
        return
    log.warning("fail point %s reached: waiting to be killed", name)
    await asyncio.Event().wait()
