"""Every route declares its permission, and each role gets exactly what ROLE_PERMISSIONS grants.

Both tests read the app's route table, so a new route is covered the moment it is registered: it
fails the first test if it declares nothing (and is not in the public allowlist), and the table test
derives its expected status per role from the permission it declares.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from api.app import create_app
from api.auth import RouteInfo, require, route_table
from dialler.agents.models import Agent, Role
from dialler.agents.permissions import ROLE_PERMISSIONS, Permission, has_permissions
from dialler.config import Settings
from tests.support.api_agents import LoginAs

PUBLIC_PATHS = frozenset(
    {
        "/api/v1/openapi.json",
        "/api/v1/docs",
        "/api/v1/redoc",
        "/docs/oauth2-redirect",
        "/api/v1/health",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        # The claim portal (a server, not a person) with X-Portal-Key: tests/api/test_portal.py
        "/api/v1/portal/magic-links/verify",
        # A recording's audio behind a play link: its signature and expiry, issued by an authorised
        # POST /recordings/{sid}/play-link (tests/e2e/test_recordings.py), are the authorisation.
        "/api/v1/recordings/{sid}/stream",
        "/metrics",  # Prometheus: the scrape key, not a person's token (tests/api/test_cdc_api.py)
        # The web UI's pages and assets (api/web.py): no data in them; every call they make to
        # /api/v1 carries the signed-in agent's token.
        "/",
        "/agent",
        "/supervisor",
        "/admin",
        "/reports",
        "/compliance",
        "/static",
    }
)
# Twilio webhooks authenticate with X-Twilio-Signature, not a bearer token.
PUBLIC_PREFIXES = ("/api/v1/webhooks/",)

ROLES: list[Role | None] = [None, Role.AGENT, Role.SUPERVISOR, Role.COMPLIANCE, Role.ADMIN]


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def route_table_of_a_fresh_app() -> list[RouteInfo]:
    # No lifespan: the route table needs no services.
    return route_table(create_app(Settings(_env_file=None)))  # type: ignore[call-arg]


def test_every_route_declares_a_permission_unless_allowlisted() -> None:
    undeclared = [
        f"{','.join(sorted(r.methods))} {r.path}"
        for r in route_table_of_a_fresh_app()
        if r.permissions is None and not is_public(r.path)
    ]

    assert not undeclared, (
        "routes without a permission: declare one with Depends(require(Permission.X)) "
        f"or add them to the public allowlist with a reason: {undeclared}"
    )


def test_allowlisted_routes_exist_and_declare_nothing() -> None:
    table = {r.path: r for r in route_table_of_a_fresh_app()}

    assert set(table) >= PUBLIC_PATHS, f"stale allowlist entries: {sorted(PUBLIC_PATHS - set(table))}"
    assert all(table[p].permissions is None for p in PUBLIC_PATHS)


def test_declarations_are_found_wherever_they_are_made() -> None:
    declared_on_route = APIRouter()
    as_parameter = APIRouter()
    on_include = APIRouter()
    undeclared = APIRouter()

    @declared_on_route.get("/a", dependencies=[Depends(require(Permission.AUDIT_READ))])
    async def a() -> None: ...

    @as_parameter.get("/b")
    async def b(
        _: Annotated[Agent, Depends(require(Permission.CALLS_NEXT, Permission.QUEUES_READ))],
    ) -> None: ...

    @on_include.get("/c")
    async def c() -> None: ...

    @undeclared.get("/d")
    async def d() -> None: ...

    app = FastAPI()
    app.include_router(declared_on_route)
    app.include_router(as_parameter)
    app.include_router(on_include, dependencies=[Depends(require(Permission.AGENTS_ADMIN))])
    app.include_router(undeclared)
    found = {r.path: r.permissions for r in route_table(app)}

    assert found["/a"] == {Permission.AUDIT_READ}
    assert found["/b"] == {Permission.CALLS_NEXT, Permission.QUEUES_READ}
    assert found["/c"] == {Permission.AGENTS_ADMIN}
    assert found["/d"] is None


def test_require_without_a_permission_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        require()


def test_roles_nest_and_every_permission_is_held_by_someone() -> None:
    agent, supervisor, compliance, admin = (
        ROLE_PERMISSIONS[r] for r in (Role.AGENT, Role.SUPERVISOR, Role.COMPLIANCE, Role.ADMIN)
    )

    assert agent < supervisor < compliance < admin
    assert set(Permission) == set(admin)
    assert Permission.AGENTS_ADMIN not in supervisor and Permission.AGENTS_ADMIN not in compliance
    # Supervisors listen to recordings and read the review queue; working it is the compliance desk's.
    assert {Permission.RECORDINGS_READ, Permission.REVIEWS_READ, Permission.DNC_MANAGE} <= supervisor
    assert Permission.REVIEWS_MANAGE not in supervisor and Permission.CUSTOMER_FLAGS_MANAGE not in supervisor
    assert {Permission.REVIEWS_MANAGE, Permission.CUSTOMER_FLAGS_MANAGE} <= compliance
    assert Permission.AUDIT_READ not in agent and Permission.CUSTOMERS_READ_ANY not in agent


_PARAM = re.compile(r"{([^}:]+)(:[^}]+)?}")


def concrete_url(route: RouteInfo) -> str:
    """The route's path with every parameter filled with a value of its type (ids that do not exist)."""
    kinds = {}
    for param in route.dependant.path_params if route.dependant else []:
        annotation = param.field_info.annotation
        kinds[param.name] = "987654321" if annotation is int else str(uuid.uuid4()) if annotation is uuid.UUID else "x"
    return _PARAM.sub(lambda m: kinds.get(m.group(1), "x"), route.path)


def expected_status(role: Role | None, route: RouteInfo) -> str:
    assert route.permissions is not None
    if role is None:
        return "401"
    return "allowed" if has_permissions(role.value, route.permissions) else "403"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value if r else "anonymous")
async def test_each_role_against_each_route(
    role: Role | None, app: FastAPI, login_as: LoginAs, replica_url: str
) -> None:
    headers = (await login_as(role)).headers if role else {}
    # An allowed call may fail for other reasons (that is the fuzzer's business); here only 401/403 matter.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    checked, failures = 0, []
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        for route in route_table(app):
            if route.permissions is None:
                continue
            for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
                # No body: authentication and authorisation are decided before the body is validated.
                response = await client.request(method, concrete_url(route), headers=headers)
                expected = expected_status(role, route)
                got = response.status_code
                code = response.json().get("error", {}).get("code") if got in (401, 403) else None
                # An object-level refusal (someone else's customer) is a 403 with another code: allowed here.
                role_refused = got == 401 or (got == 403 and code == "forbidden")
                ok = not role_refused if expected == "allowed" else str(got) == expected
                if ok and role_refused:
                    ok = set(response.json()) == {"error"} and set(response.json()["error"]) == {
                        "code",
                        "message",
                        "details",
                    }
                if not ok:
                    failures.append(f"{method} {route.path}: expected {expected}, got {got} {response.text[:200]}")
                checked += 1

    assert checked >= 10
    assert not failures, "\n".join(failures)


def test_openapi_documents_auth_and_responses_of_every_operation() -> None:
    spec = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
    problems = []
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            success = [code for code in op["responses"] if code.startswith("2")]
            if not success:
                problems.append(f"{where}: no 2xx response")
            for code in success:
                if code != "204" and "content" not in op["responses"][code]:
                    problems.append(f"{where}: {code} has no response model")
            if is_public(path):
                continue
            if op.get("security") != [{"bearer": []}]:
                problems.append(f"{where}: bearer security not documented")
            if "**Requires**" not in op.get("description", ""):
                problems.append(f"{where}: required permission not in the description")
            for code in ("401", "403"):
                schema = op["responses"].get(code, {}).get("content", {}).get("application/json", {})
                if schema.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1] != "ErrorRead":
                    problems.append(f"{where}: {code} not documented with the error shape")

    assert not problems, "\n".join(problems)
