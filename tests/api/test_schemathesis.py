"""Property-based fuzzing of the whole API from its OpenAPI spec (``make fuzz``).

Schemathesis generates valid and invalid requests for every operation and sends them to the real app
(in process, over ASGI, with its lifespan and real stores) as an agent, a supervisor and an admin.
The one property checked: no 5xx.

``DIALLER_FUZZ_EXAMPLES`` sets the examples per operation and mode (valid and invalid requests each;
default 10, about a minute for the three roles here). Public operations are fuzzed once, as the
agent, since their answer does not depend on the caller; login is capped because every valid-looking
attempt costs one deliberately slow Argon2 verification.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from api.app import create_app
from dialler.agents.models import Role
from dialler.agents.tokens import encode_access_token
from dialler.config import Settings
from dialler.integrations.sqs import ensure_cdc_queues
from tests.support.api_agents import MakeAgent

EXAMPLES = int(os.environ.get("DIALLER_FUZZ_EXAMPLES", "10"))
CAPPED = {"POST /api/v1/auth/login": 5}
PUBLIC = ("/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout", "/api/v1/health", "/api/v1/webhooks/")


def bearer(settings: Settings, agent_id: int, role: Role) -> dict[str, str]:
    # Minted directly, outside any refresh-token family: a fuzzed password reset or logout cannot
    # revoke it, so every generated request is made as the intended role.
    token, _ = encode_access_token(
        settings=settings,
        agent_id=agent_id,
        role=role.value,
        family_id=f"fuzz-{uuid.uuid4().hex}",
        now=datetime.now(UTC),
    )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def fuzzer(make_agent: MakeAgent, settings: Settings, replica_url: str) -> dict[Role, int]:
    """One agent per role (ids 1-3 after the truncate), plus an empty replica so every dependency is up."""
    ensure_cdc_queues(settings)
    return {role: (await make_agent(role)).id for role in (Role.AGENT, Role.SUPERVISOR, Role.ADMIN)}


@pytest.mark.parametrize("role", [Role.AGENT, Role.SUPERVISOR, Role.ADMIN], ids=lambda r: r.value)
def test_no_operation_answers_5xx(role: Role, fuzzer: dict[Role, int], settings: Settings) -> None:
    app = create_app(settings)
    headers = bearer(settings, fuzzer[role], role)
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    failures: list[str] = []
    calls = 0
    try:
        for result in schema.get_all_operations():
            operation = result.ok()
            if role is not Role.AGENT and operation.path.startswith(PUBLIC):
                continue
            examples = min(EXAMPLES, CAPPED.get(operation.label, EXAMPLES))
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
                @hypothesis.settings(
                    max_examples=examples,
                    deadline=None,
                    database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                def fuzz(case: schemathesis.Case) -> None:
                    nonlocal calls
                    calls += 1
                    response = case.call(headers=headers)
                    case.validate_response(response, checks=[not_a_server_error], headers=headers)

                try:
                    fuzz()
                except hypothesis.errors.Unsatisfiable:
                    pass  # e.g. no invalid request exists for an operation without inputs
                except Exception as exc:  # collect every operation's failure, not just the first
                    failures.append(f"{operation.label} ({mode.value}): {exc}")
    finally:
        from schemathesis.python import asgi

        asgi.shutdown_lifespans()

    assert calls > 0
    assert not failures, "\n\n".join(failures)
