"""One name per thing: a call's state is ``state`` in every call resource of the API.

An API client written from the OpenAPI document once read ``status`` from POST /calls/{id}/dial
and ``state`` from GET /calls/{id} for the same thing; this walks every schema the call operations
reach (requests and responses, nested and referenced) and fails on the other name.
"""

from __future__ import annotations

from typing import Any

from api.app import create_app
from dialler.calls.messages import CallState
from dialler.config import Settings

CALL_PATHS = ("/calls", "/agents/me/next-call", "/agents/me/call")


def _reachable_schemas(spec: dict[str, Any], root: Any) -> dict[str, dict[str, Any]]:
    """Every named component (and the inline root) reachable from ``root``, by name."""
    found: dict[str, dict[str, Any]] = {}
    stack = [("<inline>", root)]
    while stack:
        name, node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                target = ref.rsplit("/", 1)[1]
                if target not in found:
                    found[target] = spec["components"]["schemas"][target]
                    stack.append((target, found[target]))
                continue
            if "properties" in node:
                found.setdefault(name, node)
            stack.extend((name, value) for value in node.values())
        elif isinstance(node, list):
            stack.extend((name, value) for value in node)
    return found


def test_call_resources_name_the_call_state_state_never_status() -> None:
    spec = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
    operations = {
        f"{method.upper()} {path}": operation
        for path, item in spec["paths"].items()
        if any(part in path for part in CALL_PATHS)
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert {"GET /api/v1/calls/{session_id}", "POST /api/v1/calls/{session_id}/dial"} <= set(operations)
    offenders = []
    state_fields = []
    for label, operation in operations.items():
        bodies = [operation.get("requestBody", {}), *operation.get("responses", {}).values()]
        for name, schema in _reachable_schemas(spec, bodies).items():
            properties = schema.get("properties", {})
            if "session_id" not in properties:
                continue  # not a call: the customer, their claims and callbacks have a status of their own
            if "status" in properties:
                offenders.append(f"{label}: {name}.status")
            if "state" in properties:
                state_fields.append(label)
    assert not offenders, f"a call's state is called 'state', not 'status': {offenders}"
    # The state-changing calls answer with the state too, documented with the same values as GET.
    for path in ("/dial", "/hangup", "/outcome", "}"):
        assert any(label.endswith(path) for label in state_fields), (path, state_fields)
    accepted = spec["components"]["schemas"]["Accepted"]["properties"]["state"]
    assert all(state in accepted["description"] for state in CallState)
