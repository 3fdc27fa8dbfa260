"""Who is calling, and may they: the bearer-token dependency and per-route permission declarations.

Every route declares what it needs with ``require(...)``, either as a route dependency
(``dependencies=[Depends(require(Permission.X))]``) or as a typed parameter
(``agent: Annotated[Agent, Depends(require(Permission.X))]``). The callable ``require`` returns
carries ``required_permissions``, so :func:`declared_permissions` can read every route's declaration
from the route table; ``tests/api/test_route_permissions.py`` fails on any route without one.

Roles are loaded from the database on every request, not trusted from the token: a role change or a
disabled account takes effect on the next request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.deps import RedisDep, SessionDep, SettingsDep
from api.errors import ErrorRead, Unauthorized
from dialler.agents.errors import InvalidToken, PermissionDenied
from dialler.agents.models import Agent
from dialler.agents.permissions import ROLE_PERMISSIONS, Permission, permissions_of
from dialler.agents.tokens import decode_access_token, is_family_revoked
from dialler.audit.service import AuditAction, AuditContext, record

PERMISSIONS_ATTRIBUTE = "required_permissions"

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description="Access token from `POST /api/v1/auth/login` (or `/auth/refresh`).",
)


async def get_current_agent(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> Agent:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Sign in first: this route needs a bearer access token.")
    claims = decode_access_token(settings=settings, token=credentials.credentials)
    if await is_family_revoked(redis=redis, settings=settings, family_id=claims.family_id):
        raise InvalidToken()
    agent = await session.get(Agent, claims.agent_id)
    # The read's connection goes back to the pool now, not at the end of the request: a route that
    # then waits on another connection of the same pool (the customer's context, the pacing rates)
    # while holding this one deadlocks the pool once as many requests as it has connections do so
    # at once (a floor's next-calls at the start of a shift: pool timeouts and 500s after 30 s).
    await session.commit()
    if agent is None or not agent.active:
        raise InvalidToken()
    request.state.agent_id = agent.id
    return agent


CurrentAgent = Annotated[Agent, Depends(get_current_agent)]


def audit_context(request: Request, agent: Agent | None = None) -> AuditContext:
    """Actor, client address and request id of this request, for audit rows and log lines."""
    agent_id = agent.id if agent is not None else getattr(request.state, "agent_id", None)
    return AuditContext(
        actor_agent_id=agent_id,
        client_ip=request.client.host if request.client else None,
        request_id=getattr(request.state, "request_id", None),
    )


def require(*permissions: Permission) -> Callable[..., Awaitable[Agent]]:
    """A dependency that resolves to the current agent if their role holds every permission given.

    No token (or a bad one) is 401; a role without the permissions is 403, and the refusal is audited."""
    if not permissions:
        raise ValueError("require() needs at least one permission")
    required = frozenset(permissions)

    async def dependency(request: Request, agent: CurrentAgent, session: SessionDep) -> Agent:
        missing = sorted(p.value for p in required - permissions_of(agent.role))
        if missing:
            ctx = audit_context(request, agent)
            await record(
                session=session,
                action=AuditAction.ACCESS_DENIED,
                actor_agent_id=agent.id,
                client_ip=ctx.client_ip,
                request_id=ctx.request_id,
                details={"missing": missing, "method": request.method, "path": request.url.path},
            )
            await session.commit()
            raise PermissionDenied(missing)
        return agent

    setattr(dependency, PERMISSIONS_ATTRIBUTE, required)
    dependency.__name__ = "require_" + "_and_".join(sorted(p.value.replace(":", "_") for p in required))
    return dependency


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _walk(sub)


def declared_permissions(dependant: Dependant) -> frozenset[Permission] | None:
    """Every permission a route's dependency tree requires, or None when it declares none."""
    found: set[Permission] = set()
    declared = False
    for node in _walk(dependant):
        perms = getattr(node.call, PERMISSIONS_ATTRIBUTE, None)
        if perms is not None:
            declared = True
            found |= perms
    return frozenset(found) if declared else None


@dataclass(frozen=True)
class RouteInfo:
    path: str  # as served, with the prefix; path_format has no ``:int`` convertors (the OpenAPI key)
    path_format: str
    methods: frozenset[str]
    dependant: Dependant | None  # None for routes FastAPI did not build (docs, mounts)
    permissions: frozenset[Permission] | None


def route_table(app: FastAPI) -> list[RouteInfo]:
    """Every route the app serves, with what it requires. Reads the *effective* routes, so
    dependencies added by ``include_router(..., dependencies=...)`` count too."""
    try:  # FastAPI ≥ 0.16x includes routers lazily; app.routes then holds the included routers
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined]

        contexts: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:
        contexts = list(app.routes)
    table = []
    for ctx in contexts:
        dependant = getattr(ctx, "dependant", None)
        path = str(getattr(ctx, "path", "") or "")
        table.append(
            RouteInfo(
                path=path,
                path_format=str(getattr(ctx, "path_format", None) or path),
                methods=frozenset(getattr(ctx, "methods", None) or ()),
                dependant=dependant,
                permissions=declared_permissions(dependant) if dependant is not None else None,
            )
        )
    return table


def roles_with(permissions: frozenset[Permission]) -> list[str]:
    return [role.value for role, held in ROLE_PERMISSIONS.items() if permissions <= held]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorRead, "description": description}


PROTECTED_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("No valid access token (missing, expired, revoked, or the account is disabled)."),
    403: _error("The caller's role lacks the required permission."),
    422: _error("The request is not valid; `details` lists the fields."),
    503: _error(
        "A dependency is not reachable: `details.dependency` names it (postgres, replica, redis, temporal) "
        "and `Retry-After` says when to try again."
    ),
}
"""``responses=`` of every router with protected routes: documents the one error shape."""


def document_security(app: FastAPI) -> None:
    """Makes the OpenAPI description of each protected operation name its permission and the roles
    holding it. Call once, after every router is included."""
    generate = app.openapi
    marker = "**Requires**"

    def openapi() -> dict[str, Any]:
        schema = generate()  # cached by FastAPI; the notes are added to the cached dict once
        for route in route_table(app):
            if route.permissions is None:
                continue
            names = ", ".join(f"`{p.value}`" for p in sorted(route.permissions))
            note = f"{marker} {names} (roles: {', '.join(roles_with(route.permissions)) or 'none'})."
            for method in route.methods:
                operation = schema.get("paths", {}).get(route.path_format, {}).get(method.lower())
                if operation is not None and marker not in operation.get("description", ""):
                    description = operation.get("description")
                    operation["description"] = f"{description}\n\n{note}" if description else note
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
