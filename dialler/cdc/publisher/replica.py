"""The replica's binlog: connection settings, the contract schema, and the checks before reading."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pymysql
from sqlalchemy.engine import make_url

from dialler.cdc.publisher.common import BinlogPosition, PublisherError
from dialler.config import Settings, mask_url


def binlog_connection_settings(replica_url: str) -> dict[str, Any]:
    url = make_url(replica_url)
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 3306,
        "user": url.username or "root",
        "password": url.password or "",
        "charset": "utf8mb4",
        "connect_timeout": 5,
        # Heartbeats arrive every heartbeat_s while idle, so a silent socket this long is a dead one.
        "read_timeout": 30,
    }


def replica_schema(settings: Settings) -> str:
    """The database whose changes are published: the one the replica URL names."""
    database = make_url(settings.replica_url).database
    if not database:
        raise PublisherError(f"the replica URL {mask_url(settings.replica_url)} names no database to capture")
    return database


def binlog_problems(variables: Mapping[str, str]) -> list[str]:
    """What is wrong with the server's binlog settings for change capture (empty when fine)."""
    value = {k.lower(): str(v).upper() for k, v in variables.items()}
    if value.get("log_bin") != "ON":
        return ["the binary log is off (start the server with --log-bin --binlog-format=ROW)"]
    problems = []
    if value.get("binlog_format") != "ROW":
        problems.append(f"binlog_format is {value.get('binlog_format')}, not ROW")
    if value.get("binlog_row_image", "FULL") != "FULL":
        problems.append(f"binlog_row_image is {value.get('binlog_row_image')}, not FULL (updates need whole rows)")
    if value.get("binlog_row_metadata", "FULL") != "FULL":
        problems.append(f"binlog_row_metadata is {value.get('binlog_row_metadata')}, not FULL (column names are lost)")
    return problems


@dataclass(frozen=True)
class ReplicaStatus:
    end: BinlogPosition  # SHOW MASTER STATUS: where the binlog ends now
    log_files: dict[str, int]  # SHOW BINARY LOGS: the files still on the server, with their sizes
    server: str = ""  # which server this is (see _server_identity); a position is only valid on its server

    def holds(self, position: BinlogPosition) -> bool:
        """Whether the position can be on this server (its file is there and long enough). A
        replaced server starts again at binlog.000001, so the file name alone is not enough."""
        size = self.log_files.get(position.log_file)
        return size is not None and 4 <= position.log_pos <= size


def inspect_replica(replica_url: str) -> ReplicaStatus:
    """Connect, check the binlog settings, and read the current binlog end. Blocking."""
    where = f"MySQL replica at {mask_url(replica_url)}"
    settings = {k: v for k, v in binlog_connection_settings(replica_url).items() if k != "read_timeout"}
    try:
        conn = pymysql.connect(**settings)
    except pymysql.MySQLError as exc:
        raise PublisherError(f"{where} is unreachable: {_mysql_reason(exc)}") from None
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
                "('log_bin', 'binlog_format', 'binlog_row_image', 'binlog_row_metadata')"
            )
            problems = binlog_problems(dict(cur.fetchall()))
            if problems:
                raise PublisherError(f"{where} cannot feed change capture: {'; '.join(problems)}")
            cur.execute("SHOW MASTER STATUS")
            row = cur.fetchone()
            if row is None:
                raise PublisherError(f"{where} cannot feed change capture: the binary log is off")
            cur.execute("SHOW BINARY LOGS")
            files = {str(r[0]): int(r[1]) for r in cur.fetchall()}
            server = _server_identity(cur)
    except pymysql.MySQLError as exc:
        raise PublisherError(f"{where} refused the binlog checks: {_mysql_reason(exc)}") from None
    finally:
        conn.close()
    return ReplicaStatus(end=BinlogPosition(str(row[0]), int(row[1])), log_files=files, server=server)


_UNKNOWN_SYSTEM_VARIABLE = 1193


def _server_identity(cur: Any) -> str:
    """MySQL: ``@@server_uuid`` (made at install, kept across restarts, new on a re-provisioned server).
    MariaDB has no server UUID: a digest of what one install keeps and another does not share (its
    server id, its data directory and when its system tables were created). Stable across restarts;
    a fresh install, even in the same directory (``make clean``), differs."""
    try:
        cur.execute("SELECT @@server_uuid")
        uuid = (cur.fetchone() or (None,))[0]
        if uuid:
            return f"mysql:{uuid}"
    except pymysql.MySQLError as exc:
        if not exc.args or exc.args[0] != _UNKNOWN_SYSTEM_VARIABLE:
            raise
    cur.execute(
        "SELECT @@server_id, @@datadir, "
        "(SELECT MIN(CREATE_TIME) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'mysql')"
    )
    server_id, datadir, created = cur.fetchone()
    digest = hashlib.sha256(f"{server_id}|{datadir}|{created}".encode()).hexdigest()[:24]
    return f"mariadb:{digest}"


def _mysql_reason(exc: BaseException) -> str:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    text = str(args[1]) if len(args) >= 2 else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0][:200]
