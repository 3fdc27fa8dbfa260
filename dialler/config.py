"""Settings for every RMC Dialler process.

One pydantic-settings class, read from the environment (prefix ``DIALLER_``) and an optional ``.env``
file. Nothing here runs at import time: call :func:`get_settings` where settings are needed, and pass
them down. Every option is documented in ``.env.example``.
"""

from __future__ import annotations

import base64
import ipaddress
import sys
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, ValidatorFunctionWrapHandler, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dialler.pacing.messages import MARGIN_EVERY_S, TICK_S
from dialler.queues.phones import caller_id_problem
from dialler.security.keys import DEVELOPMENT_KEY_B64, DEVELOPMENT_KEYS, parse_keys

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class TelephonyMode(StrEnum):
    """The product's one telephony: Twilio, through the ``twilio`` SDK and Twilio's webhooks (in
    development and tests, Twilio's emulator in devstack/, reached through ``twilio_api_base_url``).
    The in-process simulator ("simulated") is gone: a setting still asking for it is refused."""

    TWILIO = "twilio"


# What an old .env saying DIALLER_TELEPHONY_MODE=simulated is told.
SIMULATED_REMOVED = (
    "telephony_mode: 'simulated' was removed, the product always talks to Twilio; delete "
    "DIALLER_TELEPHONY_MODE from your .env: `make run` starts the Twilio emulator and points "
    "twilio_api_base_url at it (or set twilio_api_base_url to an emulator of your own)"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIALLER_", env_file=".env", extra="ignore")

    # Fail closed: anything but an explicit development/test on a loopback API bind is production.
    environment: Environment = Environment.DEVELOPMENT
    log_level: str = "INFO"
    run_dir: Path = PROJECT_ROOT / ".run"
    clock_offset_s: int = 0  # demo/test stacks only: shifts the clock the compliance rules read

    # Stores
    postgres_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/dialler"
    replica_url: str = "mysql+aiomysql://root@127.0.0.1:13306/claims_app"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "dialler"
    # A Redis that stopped answering fails a command in ~2 s (503 to the caller), not after redis-py's 30.
    redis_timeout_s: float = Field(default=2.0, gt=0, le=60)
    # A dependency that is down answers 503 with this Retry-After.
    dependency_retry_after_s: int = Field(default=5, ge=1, le=300)

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "dialler"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    # The API connects to Temporal on first use and again after a failure, at most once per interval.
    temporal_connect_timeout_s: float = Field(default=3.0, gt=0, le=60)
    temporal_reconnect_interval_s: float = Field(default=1.0, ge=0, le=60)
    # TLS to the Temporal frontend. Any of the settings below turns it on; ``temporal_tls`` alone uses the
    # system's CA roots (Temporal Cloud). Production refuses a non-loopback address without TLS.
    temporal_tls: bool = False
    temporal_tls_server_ca: Path | None = None  # PEM file of the CA that signed the server's certificate
    temporal_tls_server_name: str | None = None  # SNI and certificate name when it differs from the address
    temporal_tls_client_cert: Path | None = None  # mTLS: PEM client certificate ...
    temporal_tls_client_key: Path | None = None  # ... and its private key
    temporal_api_key: SecretStr | None = None  # Temporal Cloud API key (sent as a bearer token, over TLS)
    temporal_retention_days: int = Field(default=30, ge=1, le=3650)  # `dialler temporal-setup` sets it
    # The worker's Prometheus endpoint (Temporal SDK metrics: polls, task latency, activity failures).
    worker_metrics_address: str | None = "127.0.0.1:9464"
    log_format: LogFormat | None = None  # text | json; unset: json in production, text otherwise
    # Temporal's sandbox runs each workflow in a fresh module world and proxies what it may touch: it
    # catches non-deterministic code early, at a CPU cost per workflow task. Unset: off in production
    # (the CPU goes to calls), on everywhere else, so development, the suite and the replay tests of
    # every recorded history catch what it would catch (docs/PERFORMANCE.md §5).
    workflow_sandbox: bool | None = None

    # SQS change events
    sqs_endpoint_url: str | None = "http://127.0.0.1:19324"
    aws_region: str = "eu-west-2"
    aws_access_key_id: SecretStr = SecretStr("local")
    aws_secret_access_key: SecretStr = SecretStr("local")
    cdc_queue_name: str = "dialler-cdc"
    cdc_dlq_name: str = "dialler-cdc-dlq"
    cdc_max_receive_count: int = Field(default=5, ge=1, le=1000)

    # CDC publisher (the local stand-in for AWS DMS, workers/publisher.py; dialler.cdc.publisher.options)
    publisher_checkpoint_name: str = "cdc-publisher"
    publisher_server_id: int | None = None  # replication client id; None derives a stable one from the name
    publisher_metrics_host: str = "127.0.0.1"
    publisher_metrics_port: int | None = 9465  # Prometheus endpoint of the process; None or 0 for none
    publisher_max_message_bytes: int = 200_000  # SQS allows 262,144: leave room for attributes and growth
    publisher_max_message_records: int = 1_000
    publisher_linger_s: float = 0.05  # a batch waits this long after its first record for more
    publisher_heartbeat_s: float = 0.1  # server heartbeat while idle: bounds stop latency, marks "caught up"
    publisher_max_unsent_bytes: int = 16 * 1024 * 1024  # read-ahead budget before the reader waits for SQS
    publisher_status_interval_s: float = 1.0  # Redis status hash refresh
    publisher_retry_max_s: float = 5.0  # cap of the exponential back-off for SQS, PostgreSQL and the binlog
    publisher_shutdown_grace_s: float = 10.0  # on stop, how long to keep retrying the last send

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Worker processes serving the API: Python runs one request at a time per process, so one per core.
    api_workers: int = Field(default=2, ge=1, le=64)
    public_base_url: str = "http://127.0.0.1:8000"
    api_docs: bool | None = None  # the OpenAPI document and its pages; unset: on except in production
    # Reverse proxies (CIDRs) whose Forwarded / X-Forwarded-* headers are believed; nobody else's are.
    trusted_proxies: list[str] = []
    jwt_secret: SecretStr = SecretStr("dev-only-change-me-0123456789abcdef0123456789abcdef")
    jwt_issuer: str = "rmc-dialler"
    jwt_audience: str = "rmc-dialler-ui"
    access_token_ttl_s: int = Field(default=600, ge=60, le=900)
    refresh_token_ttl_s: int = Field(default=12 * 3600, ge=600)
    login_max_attempts: int = 5
    login_window_s: int = 300
    break_reasons: list[str] = ["lunch", "comfort", "training", "meeting", "system_issue"]

    # Queues and compliance
    queue_rebuild_interval_s: int = Field(default=900, ge=60)
    lease_ttl_s: int = Field(default=120, ge=10, le=3600)
    calling_timezone: str = "Europe/London"
    weekday_hours: tuple[str, str] = ("08:00", "20:00")
    saturday_hours: tuple[str, str] | None = ("09:00", "17:00")
    max_attempts_per_day: int = Field(default=3, ge=1, le=10)
    max_attempts_per_week: int = Field(default=10, ge=1, le=30)
    min_gap_between_attempts_s: int = Field(default=4 * 3600, ge=15 * 60)
    abandoned_cooloff_s: int = Field(default=72 * 3600, ge=72 * 3600)
    rebuild_processes: int = Field(default=0, ge=0, le=64)  # processes staging rebuild ranges; 0: one per CPU
    # Customers at the head of each queue whose context the API caches before an agent takes them (0: off).
    context_read_ahead: int = Field(default=10, ge=0, le=200)

    # Callbacks
    callback_grace_s: int = Field(default=600, ge=0, le=3600)
    callback_expiry_s: int = Field(default=7200, ge=600, le=24 * 3600)
    callback_rebook_missed: bool = True
    callback_reminder_s: int = Field(default=900, ge=0, le=24 * 3600)
    # The earliest time the outcome form's picker offers: far enough ahead that the slot is still in
    # the future when the agent sends the form (the REST booking refuses less than a minute ahead).
    callback_slot_lead_s: int = Field(default=300, ge=60, le=3600)
    # How long before its due time a callback is prepared (compliance check, then queued with a
    # not-before of the due time, so that the queue, not a timer at the deadline, makes it callable).
    # Preparation is spread over the first half of this window; see docs/PERFORMANCE.md §7 for sizing.
    callback_prepare_s: int = Field(default=600, ge=0, le=3600)

    # Calls
    wrap_up_timeout_s: int = Field(default=300, ge=30, le=3600)
    preview_limit_s: int = Field(default=90, ge=10, le=900)  # a reserved customer not dialled goes back
    # Twilio does not retry a status callback that finds the API down: a call session asks the carrier
    # for its call when it has heard nothing this long after the dial (Twilio's ring timeout, 60 s, which
    # Calls.create keeps, + a margin), then this often while the call is live (a lost "completed").
    carrier_check_after_s: int = Field(default=75, ge=1, le=3600)
    carrier_check_every_s: int = Field(default=45, ge=1, le=3600)
    abandon_after_answer_s: float = Field(default=2.0, ge=0.5, le=2.0)
    # The agent's phone is ready for a bridged call while its page's heartbeat is fresher than this: a
    # closed tab or a dropped phone stops being dialled for within it (the page beats every third of it).
    device_ready_ttl_s: int = Field(default=15, ge=3, le=120)

    # Pacing: one PacingWorkflow per queue a supervisor starts (dialler/pacing, docs/PACING.md)
    pacing_tick_s: float = Field(default=TICK_S, ge=0.1, le=60)  # how often it looks at the floor and dials
    pacing_activity_timeout_s: float = Field(default=20.0, ge=1, le=300)
    pacing_ticks_per_run: int = Field(default=400, ge=5, le=10_000)  # then continue-as-new
    pacing_margin_start: float = Field(default=3.0, ge=0.5, le=4.0)  # predictive's safety margin (sd)
    pacing_margin_every_s: int = Field(default=MARGIN_EVERY_S, ge=5, le=24 * 3600)  # the margin is adapted this often
    # A queue's estimates before its calls say otherwise (then decayed means of what its calls did).
    pacing_answer_probability: float = Field(default=0.25, gt=0, le=1)
    pacing_ring_s: float = Field(default=10.0, gt=0)
    pacing_talk_s: float = Field(default=240.0, gt=0)
    pacing_wrap_s: float = Field(default=25.0, gt=0)
    answering_machine_detection: bool = False
    # With AMD on, what a machine gets: nothing (the call is hung up) or this short message (no
    # marketing, no personal data: a machine's recording may be heard by anyone in the household).
    amd_machine_message: str | None = Field(default=None, max_length=300)
    # CMCOB 2.3.6: recordings are kept at least 12 months after the claim ends; never configurable lower.
    recording_retention_months: int = Field(default=12, ge=12, le=120)
    recording_purge_interval_s: int = Field(default=24 * 3600, ge=3600)

    # Telephony and SMS
    telephony_mode: TelephonyMode = TelephonyMode.TWILIO
    twilio_account_sid: str = "AC00000000000000000000000000000000"
    twilio_auth_token: SecretStr = SecretStr("dev-twilio-auth-token")
    twilio_api_key_sid: str = "SK00000000000000000000000000000000"
    twilio_api_key_secret: SecretStr = SecretStr("dev-twilio-api-secret")
    twilio_twiml_app_sid: str = "AP00000000000000000000000000000000"
    twilio_api_base_url: str | None = None
    caller_id: str = "+441614960000"  # Ofcom drama range: production refuses it (queues.phones.caller_id_problem)
    company_name: str = "RMC Claims"
    # The information message Twilio plays when it cannot fetch a call's TwiML from us at the answer
    # (the API down or failing): hosted apart from the API, as a TwiML Bin (``dialler fallback-twiml``
    # prints it). Without it the customer hears Twilio's apology instead. Required in production.
    voice_fallback_url: str | None = None
    voice_token_ttl_s: int = Field(default=3600, ge=60, le=86400)
    portal_base_url: str = "https://portal.example.co.uk"
    portal_api_key: SecretStr = SecretStr("dev-portal-key")
    metrics_token: SecretStr = SecretStr("dev-metrics-token")
    # Crash tests only (dialler.failpoints): named points where a worker stops and waits to be killed.
    # Refused in production.
    fail_points: list[str] = []

    # Personal data (dialler.security): AES-256-GCM keys for Temporal payloads and CDC personal fields.
    # Comma-separated "key-id:base64-of-32-bytes"; the first encrypts, all decrypt (rotation: add the new
    # key first, drop an old one only after Temporal's retention and the SQS queues have outlived it).
    payload_keys: SecretStr = SecretStr(DEVELOPMENT_KEYS)
    # Browser origins allowed to call the codec server (/codec/*): the Temporal UI's.
    codec_cors_origins: list[str] = ["http://127.0.0.1:8233", "http://localhost:8233"]
    # Retention (dialler.customers.retention, a daily Temporal Schedule): SMS bodies and free-text notes
    # older than this are erased. Recordings are never erased before 12 months after the claim ends.
    retention_sms_body_days: int = Field(default=730, ge=30)
    retention_notes_days: int = Field(default=730, ge=30)

    @field_validator("publisher_server_id", "publisher_metrics_port", mode="before")
    @classmethod
    def _none_spelled_out(cls, value: object) -> object:
        # DIALLER_PUBLISHER_METRICS_PORT=none (or empty) turns the endpoint off, as it always has.
        return None if isinstance(value, str) and value.strip().lower() in ("", "none") else value

    @field_validator(
        "temporal_tls_server_ca",
        "temporal_tls_server_name",
        "temporal_tls_client_cert",
        "temporal_tls_client_key",
        "temporal_api_key",
        "api_docs",
        "workflow_sandbox",
        "worker_metrics_address",
        "log_format",
        "voice_fallback_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # ``DIALLER_TEMPORAL_TLS_SERVER_CA=`` (as in .env.example) means "not set", not the path ".".
        return None if value == "" else value

    @model_validator(mode="wrap")
    @classmethod
    def _fail_closed(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Settings:
        # A typo (``prod``) must not fall back to development: it runs as production and is refused.
        unknown = None
        simulated = False
        if isinstance(data, dict):
            raw = data.get("environment")
            if raw is not None and not isinstance(raw, Environment) and str(raw) not in set(Environment):
                unknown = str(raw)
                data = {**data, "environment": Environment.PRODUCTION}
            if str(data.get("telephony_mode", "")).strip().lower() == "simulated":
                # Refused in every environment, with the way forward, among the other refusals.
                simulated = True
                data = {k: v for k, v in data.items() if k != "telephony_mode"}
        settings: Settings = handler(data)
        refusals = settings.refusals()
        if simulated:
            refusals.insert(0, SIMULATED_REMOVED)
        if unknown is not None:
            refusals.insert(
                0, f"environment: {unknown!r} is not one of development, test, production (treated as production)"
            )
        if refusals:
            raise ValueError("refusing to start:\n" + "\n".join(refusals))
        return settings

    @property
    def is_production(self) -> bool:
        """Production unless explicitly development/test with the API bound to a loopback address."""
        return self.environment == Environment.PRODUCTION or not _is_loopback_host(self.api_host)

    @property
    def workflows_sandboxed(self) -> bool:
        return self.workflow_sandbox if self.workflow_sandbox is not None else not self.is_production

    @property
    def api_docs_enabled(self) -> bool:
        return self.api_docs if self.api_docs is not None else not self.is_production

    @property
    def temporal_tls_enabled(self) -> bool:
        return bool(
            self.temporal_tls
            or self.temporal_tls_server_ca
            or self.temporal_tls_client_cert
            or (self.temporal_api_key and self.temporal_api_key.get_secret_value())
        )

    def refusals(self) -> list[str]:
        """One line per unsafe setting, each naming it; all of them, so an operator fixes them in one go."""
        lines: list[str] = []
        if len(self.jwt_secret.get_secret_value()) < 32:
            lines.append("jwt_secret: must be at least 32 characters")
        try:  # malformed keys fail at start-up, naming what is wrong
            payload_keys = parse_keys(self.payload_keys.get_secret_value())
        except ValueError as exc:
            payload_keys = []
            lines.append(f"payload_keys: {exc}")
        if bool(self.temporal_tls_client_cert) != bool(self.temporal_tls_client_key):
            lines.append(
                "temporal_tls_client_cert, temporal_tls_client_key: mTLS needs both the certificate and the key"
            )
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                lines.append(f"trusted_proxies: {cidr!r} is not an IP address or CIDR")
        if not self.is_production:
            return lines
        why = "" if self.environment == Environment.PRODUCTION else f" (api_host {self.api_host} is not loopback)"
        defaults = Settings.model_fields
        for name in _DEVELOPMENT_SECRETS:
            if getattr(self, name).get_secret_value() == defaults[name].default.get_secret_value():
                lines.append(f"{name}: still the development default; set a real secret for production{why}")
        if any(key == base64.b64decode(DEVELOPMENT_KEY_B64) for _, key in payload_keys):
            lines.append(f"payload_keys: holds the development key; set real payload keys{why}")
        for name in ("twilio_account_sid", "twilio_api_key_sid", "twilio_twiml_app_sid"):
            if getattr(self, name) == defaults[name].default:
                lines.append(f"{name}: still the development placeholder{why}")
        for name in ("postgres_url", "replica_url", "redis_url"):
            url: str = getattr(self, name)
            parts = urlsplit(url)
            if url == defaults[name].default or (parts.password or "").lower() in _DEVELOPMENT_PASSWORDS:
                lines.append(f"{name}: the development default or a development password ({mask_url(url)}){why}")
        for name in ("aws_access_key_id", "aws_secret_access_key"):
            if getattr(self, name).get_secret_value().lower() in _DEVELOPMENT_AWS_KEYS:
                lines.append(f"{name}: a local emulator's credential; use the production account or a role{why}")
        if self.clock_offset_s:
            lines.append(f"clock_offset_s: must be 0 in production, compliance reads the real time{why}")
        if (problem := caller_id_problem(self.caller_id)) is not None:
            lines.append(
                f"caller_id: {self.caller_id!r} is {problem}; set the firm's CLI, a valid UK number customers can "
                f"call back at no more than the national rate{why}"
            )
        if self.fail_points:
            lines.append(
                f"fail_points: {', '.join(self.fail_points)} stop calls and texts half-way; leave it empty{why}"
            )
        if self.twilio_api_base_url:
            lines.append(f"twilio_api_base_url: points Twilio at {self.twilio_api_base_url}; leave it empty{why}")
        if not self.voice_fallback_url:
            lines.append(
                "voice_fallback_url: the information message for a call answered while the API cannot answer "
                f"Twilio; publish `dialler fallback-twiml` as a TwiML Bin and set its URL{why}"
            )
        if self.refresh_token_ttl_s > MAX_PRODUCTION_REFRESH_TTL_S:
            lines.append(f"refresh_token_ttl_s: at most {MAX_PRODUCTION_REFRESH_TTL_S} (one shift) in production{why}")
        if self.voice_token_ttl_s > MAX_PRODUCTION_VOICE_TTL_S:
            lines.append(
                f"voice_token_ttl_s: at most {MAX_PRODUCTION_VOICE_TTL_S} in production (the UI refreshes it){why}"
            )
        temporal_host = self.temporal_address.rsplit(":", 1)[0]
        if not _is_loopback_host(temporal_host) and not self.temporal_tls_enabled:
            lines.append(
                f"temporal_tls: Temporal at {self.temporal_address} is not loopback; set temporal_tls_server_ca "
                f"(or temporal_tls, temporal_api_key, temporal_tls_client_cert/key){why}"
            )
        return lines


# Secrets whose development default is public (it is in this repository).
_DEVELOPMENT_SECRETS = ("jwt_secret", "twilio_auth_token", "twilio_api_key_secret", "portal_api_key", "metrics_token")
# Passwords of the development stacks (docker-compose.yml, the tests' services) and the usual guesses.
_DEVELOPMENT_PASSWORDS = frozenset(
    {"dialler", "postgres", "replica", "root", "temporal", "password", "secret", "changeme"}
)
# moto's and localstack's conventional keys.
_DEVELOPMENT_AWS_KEYS = frozenset({"local", "test", "testing", "dummy", "fake"})
MAX_PRODUCTION_REFRESH_TTL_S = 12 * 3600
MAX_PRODUCTION_VOICE_TTL_S = 3600


def _is_loopback_host(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache
def get_settings() -> Settings:
    return Settings()


def settings_or_exit() -> Settings:
    """:func:`get_settings` for a process's entry point: refused settings print one ``error:`` line
    each, naming the setting, and the process exits with status 2 (no traceback)."""
    try:
        return get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ").removeprefix("refusing to start:\n")
            for line in message.splitlines():
                sys.stderr.write(f"error: {where + ': ' if where else ''}{line}\n")
        raise SystemExit(2) from None


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
