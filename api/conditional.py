"""Conditional GET for the screens that poll: ``ETag`` on the answer, ``304`` when ``If-None-Match`` matches.

The validator is a hash of the payload without the fields that change on every read (the server's
clock), so a screen that polls every second or two downloads a body only when something it shows
has changed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

CACHE_CONTROL = "private, no-cache"
NOT_MODIFIED = {304: {"description": "Not modified: `If-None-Match` matched the current `ETag`."}}


def etag_of(payload: Any, *, ignore: tuple[str, ...] = ()) -> str:
    """A strong validator of a JSON-able payload, leaving out the top-level fields in ``ignore``."""
    data = jsonable_encoder(payload)
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in ignore}
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return '"' + hashlib.sha256(raw.encode()).hexdigest()[:32] + '"'


def matches(request: Request, etag: str) -> bool:
    """Whether the request's ``If-None-Match`` names ``etag`` (weak comparison, as RFC 9110 asks for GET)."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    wanted = etag.removeprefix("W/")
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == wanted:
            return True
    return False


def conditional_json(request: Request, payload: Any, *, ignore: tuple[str, ...] = ()) -> Response:
    """``200`` with the payload and its ``ETag``, or an empty ``304`` when the client already has it."""
    etag = etag_of(payload, ignore=ignore)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if matches(request, etag):
        return Response(status_code=304, headers=headers)
    return JSONResponse(jsonable_encoder(payload), headers=headers)
