"""The layers of docs/ARCHITECTURE.md, held: imports point downward only, and the core
imports no Kafka, faust, HTTP or metrics library."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "stream_engine"

#: Lower layers first; a module may import its own layer and those below.
LAYERS = {
    "errors": 1,  # the hierarchy beside the core (its kinds are the core's ErrorKind)
    "core": 1,
    "config": 2,
    "rules": 3,
    "services": 3,
    "runtime": 4,
    "pipeline": 5,
    "offline": 5,
    "casetest": 6,
    "catalogue": 5,
    "client": 5,
    "http_client": 5,
    "api": 5,
    "cli": 7,
    "__init__": 8,
    "__main__": 8,
}
NOT_IN_CORE = ("aiokafka", "faust", "aiohttp", "prometheus_client", "kafka")


def layer(dotted: str) -> str:
    return dotted.split(".")[1] if dotted.count(".") else "__init__"


def imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found.append((".".join(parts), path))
    return found


def test_every_module_belongs_to_a_layer():
    assert {layer(name) for name, _ in modules()} <= set(LAYERS)


def test_imports_point_downward_only():
    upward = []
    for name, path in modules():
        own = LAYERS[layer(name)]
        for target in imports(path):
            if target.startswith("stream_engine.") and LAYERS[layer(target)] > own:
                upward.append(f"{name} imports {target}")
    assert not upward, upward


def test_the_core_imports_no_kafka_faust_http_or_metrics_library():
    found = [
        f"{name} imports {target}"
        for name, path in modules()
        if layer(name) == "core"
        for target in imports(path)
        if target.split(".")[0] in NOT_IN_CORE
    ]
    assert not found, found
