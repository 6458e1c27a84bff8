"""The package map of the README ("Package map"), checked on the code: who may import
whom, and that services/ own every query (issue 17). Imports are read with `ast`, so an
import inside a function or under TYPE_CHECKING counts like any other (except where a rule
says so).

When a rule here fails, either the change broke the map (move the code to where the map
says it belongs) or the map changed: then change the README's paragraph and the rule here
together.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "ari_app"
RUNTIME = ("app", "dispatch", "reconcile", "device_presence", "workers")


@dataclass(frozen=True)
class Import:
    file: str  # relative to the repository
    line: int
    module: str  # absolute, e.g. "ari_app.services.agents" or "sqlalchemy.exc"
    names: tuple[str, ...]
    type_only: bool  # under `if TYPE_CHECKING:`


def _modules(folder: Path) -> Iterator[Path]:
    yield from sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _package_of(path: Path) -> str:
    """Dotted name of the package a file belongs to (cli/ installs as hotline_cli)."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "cli":
        parts[0] = "hotline_cli"
    return ".".join(parts[:-1])  # a module's package, or __init__'s own


def imports(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    rel = str(path.relative_to(REPO))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(rel, node.lineno, alias.name, (), id(node) in type_only))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = _package_of(path).split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names = tuple(alias.name for alias in node.names)
            found.append(Import(rel, node.lineno, module, names, id(node) in type_only))
    return found


def _under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _violations(folder: Path, forbidden: tuple[str, ...], *, type_only_ok: bool) -> list[str]:
    return [
        f"{i.file}:{i.line} imports {i.module}"
        for path in _modules(folder)
        for i in imports(path)
        if _under(i.module, *forbidden) and not (type_only_ok and i.type_only)
    ]


APP_PACKAGES = ("ari", "db", "domain", "services", "flows", "web")
EVERYTHING_ELSE = tuple(
    f"ari_app.{name}"
    for name in (*APP_PACKAGES, *RUNTIME, "config", "signals", "mailer", "roster_scheduler")
)
OUTSIDE = ("devenv", "benchmarks", "tests", "hotline_cli", "cli")


def test_domain_is_pure() -> None:
    """domain/: rules without I/O, importing nothing of the app but domain/ itself."""
    forbidden = (
        *(m for m in EVERYTHING_ELSE if m != "ari_app.domain"),
        *OUTSIDE,
        "sqlalchemy",
        "aiohttp",
        "asyncpg",
        "click",
    )
    assert _violations(APP / "domain", forbidden, type_only_ok=False) == []


def test_ari_client_stands_alone() -> None:
    """ari/: the ARI client on aiohttp, nothing else of the app."""
    forbidden = (*(m for m in EVERYTHING_ELSE if m != "ari_app.ari"), *OUTSIDE)
    assert _violations(APP / "ari", forbidden, type_only_ok=False) == []


def test_db_knows_only_domain_and_config() -> None:
    allowed = ("ari_app.db", "ari_app.domain", "ari_app.config")
    forbidden = (*(m for m in EVERYTHING_ELSE if m not in allowed), *OUTSIDE)
    assert _violations(APP / "db", forbidden, type_only_ok=False) == []


def test_services_never_import_the_edges_or_the_runtime() -> None:
    """services/: the use cases every edge shares; they know no flow, web page or CLI."""
    forbidden = (
        "ari_app.flows",
        "ari_app.web",
        *(f"ari_app.{m}" for m in RUNTIME),
        "ari_app.roster_scheduler",
        *OUTSIDE,
    )
    assert _violations(APP / "services", forbidden, type_only_ok=False) == []


def test_flows_drive_calls_and_leave_the_database_to_services() -> None:
    """flows/: of SQLAlchemy only its errors and the session types (db models only as the
    types of rows services return); no web (but for types), CLI or runtime module."""
    bad = [
        f"{i.file}:{i.line} imports {i.module}"
        for path in _modules(APP / "flows")
        for i in imports(path)
        if _under(i.module, "sqlalchemy")
        and not _under(i.module, "sqlalchemy.exc", "sqlalchemy.ext.asyncio")
    ]
    assert bad == []
    forbidden = (
        "ari_app.web",
        "ari_app.app",
        "ari_app.dispatch",
        "ari_app.reconcile",
        "ari_app.workers",
        *OUTSIDE,
    )
    assert _violations(APP / "flows", forbidden, type_only_ok=True) == []


def test_reconcile_and_device_presence_reach_the_database_through_services() -> None:
    bad = [
        f"{i.file}:{i.line} imports {i.module}"
        for name in ("reconcile.py", "device_presence.py")
        for i in imports(APP / name)
        if _under(i.module, "sqlalchemy")
        and not _under(i.module, "sqlalchemy.exc", "sqlalchemy.ext.asyncio")
    ]
    assert bad == []


def test_web_knows_no_flow_cli_or_runtime() -> None:
    forbidden = ("ari_app.flows", *(f"ari_app.{m}" for m in RUNTIME), *OUTSIDE)
    assert _violations(APP / "web", forbidden, type_only_ok=False) == []


def test_nothing_installed_imports_the_harness_or_the_tests() -> None:
    """ari_app/ and cli/ ship (pip install .); devenv/, benchmarks/ and tests/ do not."""
    for folder in (APP, REPO / "cli"):
        assert _violations(folder, ("devenv", "benchmarks", "tests"), type_only_ok=False) == []
    assert _violations(APP, ("hotline_cli", "cli"), type_only_ok=False) == []


QUERY = re.compile(r"select\(|update\(|session\.(add|get|execute|scalars?)")


@pytest.mark.parametrize(
    "folder",
    ["ari_app/flows", "cli", "ari_app/reconcile.py"],
)
def test_services_own_every_query(folder: str) -> None:
    """The issue's check (`grep -rnE "select\\(|update\\(|session\\.(add|get|execute|
    scalars?)" ari_app/flows cli`), and reconcile.py: no statement outside services/."""
    root = REPO / folder
    files = [root] if root.is_file() else list(_modules(root))
    hits = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if QUERY.search(line)
    ]
    assert hits == []


def test_the_cli_writes_no_audit_row() -> None:
    """Audit rows are written by the services (admin, agents, roster, ...), whoever calls."""
    hits = [
        f"{i.file}:{i.line}"
        for path in _modules(REPO / "cli")
        for i in imports(path)
        if i.module == "ari_app.services.audit"
        or (i.module == "ari_app.services" and "audit" in i.names)
    ]
    assert hits == []


def test_the_import_reader_sees_relative_and_type_only_imports() -> None:
    """The rules above are only as good as `imports`: check it on files we know."""
    reconcile = imports(APP / "reconcile.py")
    assert any(i.module == "ari_app.dispatch" and i.type_only for i in reconcile)
    agent = imports(REPO / "cli" / "agent.py")
    assert any(i.module == "hotline_cli.common" for i in agent)
    assert any(i.module == "ari_app.services" and "admin" in i.names for i in agent)
