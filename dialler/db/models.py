"""Every PostgreSQL model, imported in one place for Alembic and for tests."""

from dialler.agents.models import Agent, PresenceEvent, RefreshToken
from dialler.audit.models import AuditEntry
from dialler.callbacks.models import Callback
from dialler.calls.inbound import InboundCall
from dialler.calls.models import CallOutcome, CallSession, ContactAttempt, CustomerNote
from dialler.cdc.models import BinlogCheckpoint
from dialler.comms.models import MagicLink, SmsConversation, SmsMessage
from dialler.compliance.models import ComplianceDecision, CustomerFlag, DoNotCall, OptOut, ReviewItem
from dialler.db.base import Base
from dialler.outbound.models import CarrierAttempt
from dialler.queues.models import QueueRebuild, QueueSetting
from dialler.recordings.models import CallRecording
from dialler.reports.models import ConversionEvent, QueueDepthSample

__all__ = [
    "Agent",
    "AuditEntry",
    "Base",
    "BinlogCheckpoint",
    "CallOutcome",
    "CallRecording",
    "CallSession",
    "CarrierAttempt",
    "Callback",
    "ComplianceDecision",
    "ContactAttempt",
    "ConversionEvent",
    "CustomerFlag",
    "CustomerNote",
    "DoNotCall",
    "InboundCall",
    "MagicLink",
    "OptOut",
    "PresenceEvent",
    "QueueDepthSample",
    "QueueRebuild",
    "QueueSetting",
    "RefreshToken",
    "ReviewItem",
    "SmsConversation",
    "SmsMessage",
]
