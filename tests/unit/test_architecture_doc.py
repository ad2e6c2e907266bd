"""docs/ARCHITECTURE.md stays true: every module and every ``Class.method`` it names exists,
the code's references to it resolve, and the README links it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
PACKAGE = ROOT / "stream_engine"


def named(pattern: str) -> set[str]:
    return set(re.findall(pattern, DOC.read_text()))


def defined() -> dict[str, set[str]]:
    """Every class of the package and the names defined in its body."""
    classes: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                body = {
                    n.name
                    for n in node.body
                    if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                }
                classes.setdefault(node.name, set()).update(body)
    return classes


def test_every_module_the_map_names_exists():
    files = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*")}
    files |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("*.py")}
    files |= {p.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")}
    names = named(r"`([\w/]+\.(?:py|yaml))`") | named(r"\(`([\w/]+\.py)`")
    missing = [n for n in sorted(names) if not any(f == n or f.endswith("/" + n) for f in files)]
    assert not missing, missing
    assert len(names) > 60  # the map names the modules, not a few of them


def test_every_class_and_method_the_record_path_names_exists():
    classes = defined()
    pairs = named(r"`([A-Z]\w+)\.(\w+)`")
    missing = [f"{c}.{m}" for c, m in sorted(pairs) if m not in classes.get(c, set())]
    assert not missing, missing
    assert len(pairs) > 10


def test_the_code_cites_the_document_where_it_is():
    cited = [
        path
        for path in PACKAGE.rglob("*.py")
        if re.search(r"(?<!docs/)ARCHITECTURE\.md", path.read_text())
    ]
    assert not cited, cited
    assert DOC.exists()


def test_the_readme_links_the_map():
    assert "(docs/ARCHITECTURE.md)" in (ROOT / "README.md").read_text()
