"""Recording a workflow's history for the replay tests (``tests/workflows/histories``).

A test that runs a new shape of a workflow writes its history when ``RECORD_HISTORY_TO=<dir>`` is set.
Temporal holds the payloads encrypted (``dialler.security.codec``); the recorded file holds them
decoded with the settings' key (the development key in tests), so the replayer needs no codec.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHandle

from dialler.config import Settings
from dialler.security.codec import codec

ENCRYPTED = base64.b64encode(b"binary/encrypted").decode()


async def record_history(handle: WorkflowHandle[Any, Any], name: str, settings: Settings) -> None:
    """Write the workflow's history, payloads decoded, to ``$RECORD_HISTORY_TO/<name>.json`` (if set)."""
    target = os.environ.get("RECORD_HISTORY_TO")
    if not target:
        return
    history = json.loads((await handle.fetch_history()).to_json())
    decoded = _decoded(history, settings)
    text = json.dumps(decoded, indent=2) + "\n"
    await asyncio.to_thread((Path(target) / f"{name}.json").write_text, text)


def _decoded(node: Any, settings: Settings) -> Any:
    if isinstance(node, dict):
        if node.get("metadata", {}).get("encoding") == ENCRYPTED:
            payload = json_format.ParseDict(node, Payload())
            return json_format.MessageToDict(codec(settings).decode_one(payload))
        return {key: _decoded(value, settings) for key, value in node.items()}
    if isinstance(node, list):
        return [_decoded(item, settings) for item in node]
    return node
