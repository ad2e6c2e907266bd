"""What the API process's profile says (benchmarks/api.py --profile): its own CPU time summed
by package (aiokafka's consumer, its protocol codec, aiohttp, asyncio, stream_engine's API
modules...), then the functions with the most own and the most cumulative time."""

from __future__ import annotations

import io
import pstats
from collections import Counter
from pathlib import Path

#: Packages whose modules are grouped one level deeper (``aiokafka.consumer``).
SPLIT = ("aiokafka", "stream_engine")
START_UP = "start-up (imports)"


def package_of(filename: str) -> str:
    """The group a profiled function's file belongs to: ``aiokafka.protocol``,
    ``stream_engine.api.outputs``, ``aiohttp``, ``asyncio``, ``start-up (imports)``,
    ``builtins`` (C functions), else the file's top package."""
    if filename == "~":
        return "builtins"
    if "importlib" in filename or filename.startswith("<frozen"):
        return START_UP
    parts = Path(filename).with_suffix("").parts
    for anchor in ("site-packages", "python3.11", "python3.12", "python3.13"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + 1 :]
            break
    for package in SPLIT:
        if package in parts:
            rest = parts[parts.index(package) :]
            return ".".join(rest[:3] if package == "stream_engine" else rest[:2])
    return parts[0] if parts else filename


def own_time_by_package(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Own (not cumulative) seconds per group, largest first; a C function's time goes to the
    group of the code that called it (``orjson.loads`` from the API's reader counts there)."""
    groups: Counter[str] = Counter()
    for (filename, _line, _name), row in stats.stats.items():  # type: ignore[attr-defined]
        callers = row[4]
        if filename == "~" and callers:
            for (caller_file, _, _), edge in callers.items():
                groups[package_of(caller_file)] += edge[2]
        else:
            groups[package_of(filename)] += row[2]
    return groups.most_common()


def report(path: Path, top: int = 25) -> str:
    """The profile as text: groups, then the top functions by own and cumulative time."""
    text = io.StringIO()
    stats = pstats.Stats(str(path), stream=text)
    groups = own_time_by_package(stats)
    total = sum(seconds for _, seconds in groups) or 1.0
    lines = [f"profile of the API process ({path}), CPU seconds by package:"]
    lines += [f"  {seconds:8.3f} s {seconds / total:6.1%}  {name}" for name, seconds in groups[:20]]
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return "\n".join(lines) + "\n" + text.getvalue()
