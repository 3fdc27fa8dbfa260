"""Imports point inward: the layering of the product's packages, checked on every import statement.

    devstack ──▶ workers ──▶ api ─────────────┐
                    │                          ▼
                    ├──▶ workflows ──▶ workflow clients (workflows/*_client.py) ──▶ dialler
                    │        │ (activity stubs,                 ▲                    ▲
                    │        ▼  passed through)                 │                    │
                    └──▶ activities ────────────────────────────┴────────────────────┘

- ``dialler/`` is the domain: it imports none of the other packages.
- A workflow client (``workflows/<name>_client.py``) is how anything outside a workflow starts, signals,
  updates or queries it. It imports only the domain and names the workflow by string, so importing it
  never imports a workflow definition and, through it, the activities.
- ``activities/`` import the domain and the workflow clients (an activity may start a workflow).
- ``workflows/`` import the domain and other workflows; they import ``activities/`` only inside
  ``workflow.unsafe.imports_passed_through()``, for the activity stubs they schedule.
- ``api/`` imports the domain and the workflow clients: never an activity or a workflow definition (the
  web process does not load worker code).
- ``workers/`` wires everything up; ``devstack/`` (development only) may use anything, and nothing in
  the product imports it.

A lazy import inside a function counts like any other: it is still a dependency. ``TYPE_CHECKING``
imports count too. Tests and benchmarks are outside the product; tests share helpers only through
``tests/support/`` (a test module or conftest is never imported by another).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dialler.config import PROJECT_ROOT

PACKAGES = ("dialler", "api", "workflows", "activities", "workers", "devstack")

# Layer of the importer → layers it may import. "activities*" means: only inside
# workflow.unsafe.imports_passed_through().
ALLOWED: dict[str, set[str]] = {
    "dialler": {"dialler"},
    "clients": {"dialler", "clients"},
    "activities": {"dialler", "clients", "activities"},
    "workflows": {"dialler", "clients", "workflows", "activities*"},
    "api": {"dialler", "clients", "api"},
    "workers": {"dialler", "clients", "activities", "workflows", "api", "workers"},
    "devstack": {"dialler", "clients", "activities", "workflows", "api", "workers", "devstack"},
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing file, relative to the project
    line: int
    target: str  # the imported module
    passed_through: bool  # inside workflow.unsafe.imports_passed_through()


def layer_of(module: str) -> str | None:
    """The layer of a module, or of a name in one (``workflows.sms_client.start_send_sms``)."""
    top, _, rest = module.partition(".")
    if top not in PACKAGES:
        return None
    if top == "workflows" and rest.partition(".")[0].endswith("_client"):
        return "clients"
    return top


def module_of(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _passes_through(node: ast.With | ast.AsyncWith) -> bool:
    return any(
        isinstance(item.context_expr, ast.Call)
        and ast.unparse(item.context_expr.func).endswith("imports_passed_through")
        for item in node.items
    )


def imports_in(path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    source = str(path.relative_to(PROJECT_ROOT))
    package = module_of(path) if path.name == "__init__.py" else module_of(path).rpartition(".")[0]

    def walk(node: ast.AST, passed: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            inside = passed or (isinstance(child, ast.With | ast.AsyncWith) and _passes_through(child))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(source, child.lineno, alias.name, inside)
            elif isinstance(child, ast.ImportFrom):
                if child.level:  # relative: resolve against the importing package
                    base = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    module = f"{base}.{child.module}" if child.module else base
                else:
                    module = child.module or ""
                # One per name: ``from workflows import sms_client`` imports a client module, and
                # ``from workflows import sms`` a workflow definition.
                for alias in child.names:
                    yield Import(source, child.lineno, f"{module}.{alias.name}", inside)
            yield from walk(child, inside)

    yield from walk(tree, False)


def product_imports() -> list[Import]:
    found: list[Import] = []
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            found.extend(imports_in(path))
    return found


def violations(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        source_layer = layer_of(module_of(PROJECT_ROOT / imp.source))
        target_layer = layer_of(imp.target)
        if source_layer is None or target_layer is None:
            continue
        allowed = ALLOWED[source_layer]
        if target_layer in allowed or (imp.passed_through and f"{target_layer}*" in allowed):
            continue
        where = " outside imports_passed_through()" if f"{target_layer}*" in allowed else ""
        problems.append(f"{imp.source}:{imp.line}: {source_layer} imports {imp.target} ({target_layer}){where}")
    return problems


def layer_cycles(imports: list[Import]) -> list[list[str]]:
    """Cycles in the graph of layers (a layer importing itself is not one)."""
    edges: dict[str, set[str]] = {}
    for imp in imports:
        a, b = layer_of(module_of(PROJECT_ROOT / imp.source)), layer_of(imp.target)
        if a is not None and b is not None and a != b:
            edges.setdefault(a, set()).add(b)
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt == path[0]:
                cycles.append([*path, nxt])
            elif nxt not in path and nxt > path[0]:  # each cycle once, from its smallest layer
                visit(nxt, [*path, nxt])

    for start in sorted(edges):
        visit(start, [start])
    return cycles


def test_every_import_points_inward() -> None:
    problems = violations(product_imports())
    assert not problems, "imports pointing outward:\n" + "\n".join(problems)


def test_no_cycle_between_layers() -> None:
    cycles = layer_cycles(product_imports())
    assert not cycles, "import cycles between layers:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_tests_share_helpers_only_through_tests_support() -> None:
    found = []
    for path in sorted((PROJECT_ROOT / "tests").rglob("*.py")):
        for imp in imports_in(path):
            if imp.target.startswith("tests.") and not imp.target.startswith("tests.support"):
                found.append(f"{imp.source}:{imp.line}: imports {imp.target}")
    assert not found, "move what is shared to tests/support/:\n" + "\n".join(found)


# The checker itself: each rule, on a file written to break it.
@pytest.mark.parametrize(
    ("module", "code", "expected"),
    [
        (
            "dialler/x_probe.py",
            "from workflows.callback import CallbackWorkflow\n",
            "dialler imports workflows.callback",
        ),
        ("dialler/x_probe.py", "def f():\n    import activities.calls\n", "dialler imports activities.calls"),
        ("dialler/x_probe.py", "from devstack import seed\n", "dialler imports devstack"),
        ("api/x_probe.py", "from activities.queues import QueueActivities\n", "api imports activities.queues"),
        ("api/x_probe.py", "from workflows.callback import CallbackWorkflow\n", "api imports workflows.callback"),
        ("activities/x_probe.py", "from workflows.sms import SendSmsWorkflow\n", "activities imports workflows.sms"),
        ("workflows/x_probe_client.py", "from workflows.sms import SendSmsWorkflow\n", "clients imports workflows.sms"),
        ("workflows/x_probe.py", "from activities.sms import SmsActivities\n", "outside imports_passed_through"),
        ("workers/x_probe.py", "from devstack.services import free_port\n", "workers imports devstack.services"),
        ("api/x_probe.py", "from workflows import sms\n", "api imports workflows.sms"),
    ],
)
def test_the_checker_catches_an_outward_import(module: str, code: str, expected: str) -> None:
    path = PROJECT_ROOT / module
    assert not path.exists()
    path.write_text(code)
    try:
        problems = violations(list(imports_in(path)))
    finally:
        path.unlink()
    assert any(expected in p for p in problems), problems


def test_the_checker_allows_activity_stubs_passed_through_and_clients() -> None:
    code = (
        "from temporalio import workflow\n"
        "with workflow.unsafe.imports_passed_through():\n"
        "    from activities.sms import SmsActivities\n"
        "from workflows.sms_client import start_send_sms\n"
        "from workflows import callback_client\n"
    )
    path = PROJECT_ROOT / "workflows" / "x_probe.py"
    path.write_text(code)
    try:
        assert violations(list(imports_in(path))) == []
    finally:
        path.unlink()


def test_the_checker_finds_a_cycle() -> None:
    imports = [
        Import("activities/a.py", 1, "workflows.callback", False),
        Import("workflows/callback.py", 1, "activities.callbacks", True),
    ]
    assert layer_cycles(imports) == [["activities", "workflows", "activities"]]
