from __future__ import annotations

from dialler.agents.models import Role
from dialler.agents.permissions import Permission, has_permissions, permissions_of


def test_unknown_role_holds_nothing() -> None:
    assert permissions_of("root") == frozenset()
    assert not has_permissions("root", {Permission.PROFILE_READ})


def test_supervisors_see_everything_operational_but_do_not_manage_accounts() -> None:
    operational = {
        Permission.PRESENCE_READ_ALL,
        Permission.CUSTOMERS_READ_ANY,
        Permission.CALLBACKS_READ_ALL,
        Permission.DASHBOARD_READ,
        Permission.REBUILD_TRIGGER,
        Permission.AUDIT_READ,
    }
    assert has_permissions(Role.SUPERVISOR.value, operational)
    assert not has_permissions(Role.SUPERVISOR.value, {Permission.AGENTS_ADMIN})
    assert has_permissions(Role.ADMIN.value, {Permission.AGENTS_ADMIN, *operational})


def test_agents_work_calls_but_only_their_own_customers() -> None:
    assert has_permissions(Role.AGENT.value, {Permission.CALLS_NEXT, Permission.CUSTOMERS_READ_OWN})
    assert not has_permissions(Role.AGENT.value, {Permission.CUSTOMERS_READ_ANY})
