"""The alert rules and the Grafana dashboard: valid (promtool), naming only metrics the code exports,
and every alert with a runbook entry in docs/OPERATIONS.md."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from api.middleware import HTTP_FAMILIES
from dialler.cdc.metrics import FAMILIES as CDC_FAMILIES
from dialler.config import PROJECT_ROOT
from dialler.metrics import FLOOR_FAMILIES
from tests.support.worker_metrics import SDK_FAMILIES

ALERTS = PROJECT_ROOT / "deploy" / "prometheus" / "alerts.yml"
SCRAPE = PROJECT_ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "dialler.json"
OPERATIONS = PROJECT_ROOT / "docs" / "OPERATIONS.md"

# Families whose presence on /metrics or the worker's endpoint a test proves (tests/api/test_metrics.py,
# tests/workers/test_worker_metrics.py); each family's samples may carry these suffixes.
EXPORTED = set(FLOOR_FAMILIES) | set(HTTP_FAMILIES) | set(CDC_FAMILIES) | set(SDK_FAMILIES)
SUFFIXES = ("", "_total", "_bucket", "_sum", "_count", "_created")
PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers that are not functions, keywords, label
    names (in {…} or by/without (…)), durations or strings."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[match.end() :].lstrip()
        if rest.startswith("(") or match.group(0) in PROMQL_WORDS:
            continue
        names.add(match.group(0))
    return names


def exported(name: str) -> bool:
    return any(name == family + suffix for family in EXPORTED for suffix in SUFFIXES)


def alert_rules() -> list[dict[str, object]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]


def test_promtool_accepts_the_rules_and_the_scrape_config(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: run `make system-deps` (Debian package prometheus)"
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    token = tmp_path / "token"
    token.write_text("t")
    (tmp_path / "prometheus.yml").write_text(
        SCRAPE.read_text().replace("/etc/prometheus/dialler-metrics-token", str(token))
    )

    rules = subprocess.run([promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    config = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=60
    )

    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_parser_finds_metric_names_and_nothing_else() -> None:
    expr = 'sum by (le, route) (rate(x_bucket{status=~"5.."}[5m])) / on (route) y_total > 0.02 and absent(z)'

    assert metric_names(expr) == {"x_bucket", "y_total", "z"}


def test_the_issue_s_alerts_are_there() -> None:
    names = {rule["alert"] for rule in alert_rules()}

    assert {
        "CdcLagHigh",
        "CdcDeadLetters",
        "AbandonedRateNearCeiling",
        "NoWorkerPolling",
        "CallbacksMissed",
        "ApiErrors",
    } <= names


def test_every_alert_and_panel_reads_only_exported_metrics() -> None:
    expressions = [str(rule["expr"]) for rule in alert_rules()] + dashboard_exprs()
    read = set().union(*(metric_names(expr) for expr in expressions))

    assert read, "no metric names found"
    assert sorted(name for name in read if not exported(name)) == []


def test_every_alert_has_a_runbook_entry() -> None:
    headings = set(re.findall(r"^#{2,4} (\w+)\s*$", OPERATIONS.read_text(), re.M))

    for rule in alert_rules():
        assert rule["alert"] in headings, f"docs/OPERATIONS.md has no runbook heading for {rule['alert']}"
        assert str(rule["annotations"]["runbook"]).endswith(f"#{str(rule['alert']).lower()}")  # type: ignore[index]


def test_operations_covers_deploy_configure_scale_backup_and_secrets() -> None:
    text = OPERATIONS.read_text()

    for section in (
        "## 2. Deploy",
        "## 3. Configure",
        "## 4. Scale",
        "## 5. Back up and restore PostgreSQL",
        "## 6. Rotate secrets",
    ):
        assert section in text
    # The commands it tells an operator to run exist.
    for command in ("dialler migrate", "dialler temporal-setup", "dialler rebuild", "--reset-checkpoint"):
        assert command in text
