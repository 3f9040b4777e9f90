"""The layout's rules, checked on the source: a pure contract, one wiring place, small files."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("streams", "projections", "sinks", "processors", "infra", "benchmarks")
CLIENT_LIBS = ("faust", "aiokafka", "confluent_kafka", "redis", "psycopg")


def _sources(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", _sources("streams"), ids=lambda p: p.name)
def test_streams_imports_no_client_library(path: Path) -> None:
    bad = {n for n in _imported(path) if n.split(".")[0] in CLIENT_LIBS}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}: streams/ is the pure contract"


def test_importing_streams_loads_no_client_library() -> None:
    code = (
        "import sys, importlib, pkgutil, streams\n"
        "for m in pkgutil.iter_modules(streams.__path__):\n"
        "    importlib.import_module('streams.' + m.name)\n"
        f"print(sorted(n for n in sys.modules if n.split('.')[0] in {CLIENT_LIBS!r}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("pkg", ["projections", "sinks"])
def test_read_models_and_sinks_import_only_streams(pkg: str) -> None:
    ours = {"processors", "infra", "benchmarks", "projections", "sinks"} - {pkg}
    for path in _sources(pkg):
        bad = {n for n in _imported(path) if n.split(".")[0] in ours}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


#: Constructors of clients: only processors/bootstrap.py may call them.
CONSTRUCTORS = re.compile(
    r"\b(Consumer|Producer|AdminClient|faust\.App|SchemaRegistryClient(\.new_client)?)\(|"
    r"\.from_url\(|psycopg\.connect\(|AsyncConnection\.connect\("
)


def test_clients_are_built_only_in_bootstrap() -> None:
    found = []
    for path in _sources(*PACKAGES):
        if path == ROOT / "processors" / "bootstrap.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if CONSTRUCTORS.search(line) and not line.lstrip().startswith(("#", '"', "'")):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "clients built outside processors/bootstrap.py:\n" + "\n".join(found)
