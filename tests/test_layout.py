"""The core's layout, checked: packages by concern, imports in one direction, modules of a size
one can read. Each package's `__init__` docstring says the same rules in words."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.quick

RAG = ROOT / "rag"
MAX_LINES = 450
MAX_TOP_MODULES = 12
BASE = {"config", "errors", "status"}  # what every part may use
# What each package may import from the rest of `rag` (besides itself and BASE).
MAY_IMPORT = {
    "models": set(),
    "storage": {"models"},
    "ingestion": {"storage", "models"},
    "retrieval": {"storage", "models"},
    "answering": {"retrieval", "storage", "models", "ingestion"},
}
UI = ("streamlit", "pages")


def modules() -> list[Path]:
    return sorted(RAG.rglob("*.py"))


def part_of(path: Path) -> str:
    """`ingestion` for rag/ingestion/jobs.py, `config` for rag/config.py."""
    relative = path.relative_to(RAG)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imported_parts(path: Path) -> dict[str, int]:
    """Every top-level part of `rag` (or UI package) this file imports, with the line of the import."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "rag" else [f"rag.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] in UI:
                found.setdefault(parts[0], node.lineno)
            elif parts[0] == "rag" and len(parts) > 1:
                found.setdefault(parts[1], node.lineno)
    return found


def test_the_core_is_packages_by_concern():
    top = [p for p in RAG.glob("*.py")]
    packages = [p for p in RAG.iterdir() if (p / "__init__.py").is_file()]
    assert len(top) <= MAX_TOP_MODULES, sorted(p.name for p in top)
    assert len(packages) >= 5, packages
    for package in packages:
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
        assert len(doc.split()) >= 30, f"{package.name}/__init__.py says what it owns and may import"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_one_way(path):
    own = part_of(path)
    for part, line in imported_parts(path).items():
        where = f"{path.relative_to(ROOT)}:{line} imports {part}"
        assert part not in UI, f"{where}: the core never imports the UI"
        if part == "bench":
            assert own in ("bench", "cli"), f"{where}: only the CLI and the benchmarks use rag.bench"
        if own in MAY_IMPORT and part != own and part not in BASE:
            assert part in MAY_IMPORT[own], f"{where}: {own} may import only {sorted(MAY_IMPORT[own] | BASE)}"
        if own in BASE:
            assert part in BASE, f"{where}: {own} is below everything else"


@pytest.mark.parametrize("folder", ["rag", "pages"])
def test_no_module_is_too_long_to_read(folder):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
