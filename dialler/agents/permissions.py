"""Permissions and the roles that hold them.

Routes declare permissions, never roles: a role is only a named bundle, so moving a capability from
supervisors to agents is a one-line change here, and the route-table tests follow automatically.

The bundles nest (agent ⊂ supervisor ⊂ compliance ⊂ admin): supervisors can do everything an agent can
(they take calls on a busy day) and see everything operational, listen to recordings and read the review
queue; the compliance officer adds working that queue (acknowledge, assign, resolve) and the customer
flags (mark vulnerable or clear); admins add the management of accounts.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from dialler.agents.models import Role


class Permission(StrEnum):
    # Self-service, held by every role.
    PROFILE_READ = "profile:read"
    PRESENCE_WRITE = "presence:write"  # one's own presence only
    QUEUES_READ = "queues:read"  # depths of the queues one works
    CALLS_NEXT = "calls:next"
    CALLS_WORK = "calls:work"  # dial, hang up, submit the outcome of one's own session
    VOICE_TOKEN = "voice:token"  # Twilio access token for one's own browser
    CUSTOMERS_READ_OWN = "customers:read_own"  # leased to or called by oneself (object check in the route)
    CALLBACKS_READ_OWN = "callbacks:read_own"
    CALLBACKS_WRITE = "callbacks:write"  # book / reschedule / cancel one's own callbacks
    SMS_SEND = "sms:send"  # to a customer one holds (magic links, follow-ups)
    REPORTS_READ_OWN = "reports:read_own"  # one's own agent report (object check in the route)

    # Operational oversight: supervisors and admins.
    PRESENCE_READ_ALL = "presence:read_all"
    AGENTS_READ = "agents:read"
    CUSTOMERS_READ_ANY = "customers:read_any"
    CALLS_READ_ALL = "calls:read_all"
    CALLS_END_ANY = "calls:end_any"  # end anyone's live call (e.g. one whose carrier leg is gone)
    CALLBACKS_READ_ALL = "callbacks:read_all"
    CALLBACKS_MANAGE = "callbacks:manage"  # reassign / rebook / cancel anyone's
    SMS_READ_ALL = "sms:read_all"
    DASHBOARD_READ = "dashboard:read"
    REBUILD_TRIGGER = "rebuild:trigger"
    PACING_MANAGE = "pacing:manage"  # a queue's abandoned-call ceiling (never above Ofcom's 3 %)
    DNC_MANAGE = "dnc:manage"  # do-not-call list entries
    AUDIT_READ = "audit:read"
    REPORTS_READ = "reports:read"  # every report over any period, and their CSV exports
    RECORDINGS_READ = "recordings:read"  # list and play call recordings (each play audited)
    REVIEWS_READ = "reviews:read"  # the review queue (complaints, vulnerable, deceased)

    # The compliance desk: compliance officers and admins.
    REVIEWS_MANAGE = "reviews:manage"  # acknowledge, assign, resolve review items
    CUSTOMER_FLAGS_MANAGE = "customer_flags:manage"  # mark a customer vulnerable or clear it
    # Decode Temporal payloads (the codec server behind the Temporal UI): personal data, audited.
    PAYLOADS_DECODE = "payloads:decode"

    # Account management: admins only.
    AGENTS_ADMIN = "agents:admin"
    # A customer's data rights: subject-access export and erasure (UK GDPR arts. 15, 17).
    PERSONAL_DATA_ADMIN = "personal_data:admin"


_AGENT: frozenset[Permission] = frozenset(
    {
        Permission.PROFILE_READ,
        Permission.PRESENCE_WRITE,
        Permission.QUEUES_READ,
        Permission.CALLS_NEXT,
        Permission.CALLS_WORK,
        Permission.VOICE_TOKEN,
        Permission.CUSTOMERS_READ_OWN,
        Permission.CALLBACKS_READ_OWN,
        Permission.CALLBACKS_WRITE,
        Permission.SMS_SEND,
        Permission.REPORTS_READ_OWN,
    }
)

_SUPERVISOR: frozenset[Permission] = _AGENT | {
    Permission.PRESENCE_READ_ALL,
    Permission.AGENTS_READ,
    Permission.CUSTOMERS_READ_ANY,
    Permission.CALLS_READ_ALL,
    Permission.CALLS_END_ANY,
    Permission.CALLBACKS_READ_ALL,
    Permission.CALLBACKS_MANAGE,
    Permission.SMS_READ_ALL,
    Permission.DASHBOARD_READ,
    Permission.REBUILD_TRIGGER,
    Permission.PACING_MANAGE,
    Permission.DNC_MANAGE,
    Permission.AUDIT_READ,
    Permission.REPORTS_READ,
    Permission.RECORDINGS_READ,
    Permission.REVIEWS_READ,
    Permission.PAYLOADS_DECODE,
}

_COMPLIANCE: frozenset[Permission] = _SUPERVISOR | {
    Permission.REVIEWS_MANAGE,
    Permission.CUSTOMER_FLAGS_MANAGE,
}

_ADMIN: frozenset[Permission] = _COMPLIANCE | {Permission.AGENTS_ADMIN, Permission.PERSONAL_DATA_ADMIN}

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.AGENT: _AGENT,
    Role.SUPERVISOR: _SUPERVISOR,
    Role.COMPLIANCE: _COMPLIANCE,
    Role.ADMIN: _ADMIN,
}


def permissions_of(role: str) -> frozenset[Permission]:
    """The permissions of a role as stored on an agent row; an unknown role holds nothing."""
    try:
        return ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return frozenset()


def has_permissions(role: str, required: frozenset[Permission] | set[Permission]) -> bool:
    return set(required) <= permissions_of(role)
