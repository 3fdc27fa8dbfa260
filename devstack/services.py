"""The local stand-ins for infrastructure: how to start, probe and stop each one.

Used by ``devstack.stack`` (``make run``) and by the test harness, so that both start services the
same way. Every process is started in its own session and stopped by its PID (never by name: the
machine runs other services), with its log and PID file under the run directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dialler import search_attributes
from dialler.config import Settings, mask_url

log = logging.getLogger("devstack.services")

VENV_BIN = Path(sys.executable).parent
MARIADB_FLAGS = [
    "--binlog-format=ROW",
    "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL",
    "--server-id=1",
    "--skip-name-resolve",
    "--innodb-buffer-pool-size=512M",
    "--innodb-flush-log-at-trx-commit=2",
    "--max-allowed-packet=64M",
]


class ServiceError(RuntimeError):
    """A service could not be reached or started; the message is one line for the operator."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(check, what: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-800:] if log and log.exists() else ""
            raise ServiceError(f"{what} exited with code {proc.returncode} during start-up. {tail.strip()}")
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise ServiceError(f"{what} was not ready within {timeout:.0f} s")


@dataclass
class ProcessGroup:
    """Processes started by us, with PID files, stopped in reverse order."""

    run_dir: Path
    started: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    die_with_parent: bool = False  # tests: a killed test run must not leave services behind
    commands: dict[str, tuple[list[str], dict[str, str] | None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        (self.run_dir / "pids").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)

    def log_path(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        proc = self._spawn(name, argv, env)
        self.started.append((name, proc))
        return proc

    def restart(self, name: str) -> subprocess.Popen:
        """Start ``name`` again with the command it was started with, in its place in the stop order
        (what is left of the old one, e.g. children in its process group, is stopped first)."""
        index = next(i for i, (n, _) in enumerate(self.started) if n == name)
        stop_pid(self.started[index][1].pid, timeout=2, proc=self.started[index][1])
        proc = self._spawn(name, *self.commands[name])
        self.started[index] = (name, proc)
        return proc

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None) -> subprocess.Popen:
        self.commands[name] = (argv, env)
        log = self.log_path(name).open("ab")
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # our own process group: Ctrl-C in the terminal reaches us only
            env={**os.environ, **(env or {})},
            preexec_fn=_die_with_parent if self.die_with_parent else None,
        )
        log.close()  # the child has its own descriptor
        (self.run_dir / "pids" / f"{name}.pid").write_text(str(proc.pid))
        return proc

    def stop_all(self, timeout: float = 10.0) -> None:
        for name, proc in reversed(self.started):
            stop_pid(proc.pid, timeout=timeout, proc=proc)
            (self.run_dir / "pids" / f"{name}.pid").unlink(missing_ok=True)
        self.started.clear()


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when the parent dies (PR_SET_PDEATHSIG)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def stop_pid(pid: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    """SIGTERM the process group led by pid, then SIGKILL what is left after the timeout."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            if proc.poll() is not None:
                break
        elif not _alive(pid):
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
        return status != "Z"
    return False


# --- Temporal -------------------------------------------------------------------------------------


def temporal_argv(
    *, port: int, ui_port: int | None, db_file: Path, namespace: str, codec_endpoint: str | None = None
) -> list[str]:
    argv = [
        str(VENV_BIN / "temporal"),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--db-filename",
        str(db_file),
        "--namespace",
        namespace,
        # WAL: ~2.5x the throughput of the default journal on this machine (docs/PERFORMANCE.md).
        "--sqlite-pragma",
        "journal_mode=wal",
        "--sqlite-pragma",
        "synchronous=off",
        "--log-level",
        "warn",
        *search_attributes.cli_flags(),
    ]
    argv += ["--headless"] if ui_port is None else ["--ui-port", str(ui_port)]
    if ui_port is not None and codec_endpoint:
        # The UI sends each payload it shows to the API's codec server (api/routes/codec.py), which
        # decodes only for a supervisor's or admin's token: everyone else sees ciphertext.
        argv += ["--ui-codec-endpoint", codec_endpoint]
    return argv


def start_temporal(group: ProcessGroup, settings: Settings, ui_port: int = 8233) -> subprocess.Popen:
    host, port = settings.temporal_address.rsplit(":", 1)
    data = group.run_dir / "temporal"
    data.mkdir(parents=True, exist_ok=True)
    argv = temporal_argv(
        port=int(port),
        ui_port=ui_port,
        db_file=data / "temporal.db",
        namespace=settings.temporal_namespace,
        codec_endpoint=settings.public_base_url.rstrip("/") + "/codec",
    )
    proc = group.start("temporal", argv)
    log = group.log_path("temporal")
    wait_for(lambda: port_open(host, int(port)), "Temporal dev server", 30, proc, log)
    wait_for(lambda: port_open(host, ui_port), "Temporal Web UI", 30, proc, log)
    return proc


# --- SQS (moto) ------------------------------------------------------------------------------------


def start_moto(group: ProcessGroup, port: int) -> subprocess.Popen:
    proc = group.start("sqs", [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)])
    wait_for(lambda: port_open("127.0.0.1", port), "SQS (moto_server)", 20, proc, group.log_path("sqs"))
    return proc


# --- Twilio emulator ------------------------------------------------------------------------------


def start_twilio_emulator(
    group: ProcessGroup,
    port: int,
    *,
    account_sid: str,
    auth_token: str,
    api_keys: dict[str, str] | None = None,
    voice_url: str | None = None,
    sms_url: str | None = None,
    demo_rules: bool = True,
) -> subprocess.Popen:
    """The local Twilio (``devstack.twilio_emulator``) on 127.0.0.1:port, its own process so that a
    worker crash does not end a call. ``api_keys`` maps API key sid → secret accepted for REST."""
    argv = [
        sys.executable,
        "-m",
        "devstack.twilio_emulator",
        "--port",
        str(port),
        "--account-sid",
        account_sid,
        "--auth-token",
        auth_token,
    ]
    for sid, secret in (api_keys or {}).items():
        argv += ["--api-key", f"{sid}:{secret}"]
    if voice_url:
        argv += ["--voice-url", voice_url]
    if sms_url:
        argv += ["--sms-url", sms_url]
    if not demo_rules:
        argv.append("--no-demo-rules")
    # Secrets on the command line are the emulator's development values, never a real account's.
    # The checkout this module belongs to, whatever the caller's working directory.
    root = str(Path(__file__).resolve().parents[1])
    pythonpath = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    proc = group.start("twilio-emulator", argv, env={"PYTHONPATH": pythonpath})
    log = group.log_path("twilio-emulator")
    wait_for(lambda: port_open("127.0.0.1", port), "Twilio emulator", 20, proc, log)
    return proc


# --- MariaDB replica with row binlog -------------------------------------------------------------


def mariadb_binaries() -> tuple[str, str]:
    install = shutil.which("mariadb-install-db")
    server = shutil.which("mariadbd") or ("/usr/sbin/mariadbd" if Path("/usr/sbin/mariadbd").exists() else None)
    if not install or not server:
        raise ServiceError("MariaDB server binaries not found: install the Debian package mariadb-server")
    return install, server


def _install_mariadb(install: str, datadir: Path) -> None:
    """A new data directory. Tried twice: the bootstrap server it runs has failed once on a busy
    machine (CI, three suites' MariaDBs starting together); what it said is in the error."""
    for attempt in (1, 2):
        shutil.rmtree(datadir, ignore_errors=True)
        datadir.mkdir(parents=True)
        done = subprocess.run(
            [install, "--no-defaults", f"--datadir={datadir}", "--user=root"]
            + ["--auth-root-authentication-method=normal"],
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            return
        said = (done.stderr or done.stdout).strip()[-2000:]
        if attempt == 2:
            raise RuntimeError(f"mariadb-install-db failed (exit {done.returncode}) for {datadir}:\n{said}")
        log.warning("mariadb-install-db failed (exit %s), trying once more: %s", done.returncode, said[-300:])


def start_mariadb(group: ProcessGroup, port: int, name: str = "mariadb") -> subprocess.Popen:
    """A private MariaDB with a row binlog (the change-data-capture source), root without password,
    reachable on 127.0.0.1:port only."""
    install, server = mariadb_binaries()
    data = group.run_dir / name
    datadir = data / "data"
    if not (datadir / "mysql").exists():
        _install_mariadb(install, datadir)
    argv = [
        server,
        "--no-defaults",
        f"--datadir={datadir}",
        f"--port={port}",
        "--bind-address=127.0.0.1",
        f"--socket={data / 'mysqld.sock'}",
        f"--pid-file={data / 'mysqld.pid'}",
        f"--log-bin={data / 'binlog'}",
        "--user=root",
        *MARIADB_FLAGS,
    ]
    proc = group.start(name, argv)
    wait_for(
        lambda: port_open("127.0.0.1", port), f"MariaDB replica on 127.0.0.1:{port}", 30, proc, group.log_path(name)
    )
    return proc


def url_host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def unreachable(service: str, url: str, why: str) -> ServiceError:
    return ServiceError(f"{service} at {mask_url(url)} is unreachable: {why}")
