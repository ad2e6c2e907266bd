"""benchmarks/api.py's output: the tables for people, the target lines, one JSON line."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.table import Table

from benchmarks.api_load import SLACK_MS, Figures, figures, last_held, target_met


@dataclass(frozen=True)
class Cpu:
    """CPU seconds within one phase's window: the API process, the workers, the broker, and
    this benchmark's own process."""

    api_s: float = math.nan
    workers_s: float = math.nan
    broker_s: float = math.nan
    bench_s: float = math.nan

    def per_1k(self, seconds: float, count: int) -> float:
        """``seconds`` per 1,000 of ``count`` (NaN without any)."""
        return seconds * 1000.0 / count if count else math.nan


@dataclass(frozen=True)
class Phase:
    """One timed phase: decide calls, or records through the pipeline, at a rate."""

    rate: float
    figures: Figures
    window_s: float
    cpu: Cpu = field(default_factory=Cpu)
    latencies_ms: tuple[float, ...] = ()
    statuses: tuple[int, ...] = ()
    #: The mean time a decide call spent inside the API process (its own histogram).
    server_mean_ms: float = math.nan
    #: Round trips of ``GET /health`` made during the phase (the HTTP hop alone).
    health_ms: tuple[float, ...] = ()

    @classmethod
    def of(
        cls,
        rate: float,
        latencies_ms: Sequence[float],
        statuses: Sequence[int],
        window_s: float,
        cpu: Cpu,
        server_mean_ms: float = math.nan,
        health_ms: Sequence[float] = (),
    ) -> Phase:
        """A phase from its raw figures."""
        return cls(
            rate, figures(latencies_ms, statuses), window_s, cpu, tuple(latencies_ms),
            tuple(statuses), server_mean_ms, tuple(health_ms),
        )  # fmt: skip

    @property
    def health(self) -> Figures:
        """The ``GET /health`` round trips' figures."""
        return figures(self.health_ms)

    @property
    def achieved(self) -> float:
        """Requests (or records) per second actually completed within the window."""
        return self.figures.count / self.window_s if self.window_s > 0 else math.nan

    @property
    def api_cpu_per_1k(self) -> float:
        """CPU seconds of the API process per 1,000 calls (or records)."""
        return self.cpu.per_1k(self.cpu.api_s, self.figures.count)

    @property
    def workers_cpu_per_1k(self) -> float:
        """CPU seconds of the stage workers per 1,000 calls (or records)."""
        return self.cpu.per_1k(self.cpu.workers_s, self.figures.count)


def merged(phases: Sequence[Phase]) -> Phase:
    """Phases at one rate as one: their latencies and statuses together, windows and CPU
    added up."""
    cpu = Cpu(
        *(
            sum(getattr(p.cpu, name) for p in phases)
            for name in ("api_s", "workers_s", "broker_s", "bench_s")
        )
    )
    counted = [p for p in phases if math.isfinite(p.server_mean_ms)]
    calls = sum(p.figures.count for p in counted)
    server = sum(p.server_mean_ms * p.figures.count for p in counted) / calls if calls else math.nan
    return Phase.of(
        phases[0].rate,
        [v for p in phases for v in p.latencies_ms],
        [s for p in phases for s in p.statuses],
        sum(p.window_s for p in phases),
        cpu,
        server,
        [v for p in phases for v in p.health_ms],
    )


@dataclass(frozen=True)
class Comparison:
    """At one rate: the pipeline's own publish -> decision latency and decide's."""

    pipeline: Phase
    decide: Phase

    @property
    def met(self) -> bool:
        """decide p99 <= pipeline p99 + 10 ms."""
        return target_met(self.decide.figures.p99_ms, self.pipeline.figures.p99_ms)


@dataclass(frozen=True)
class Step:
    """One rate of the capacity sweep, and whether it held."""

    decide: Phase
    held: bool


def _num(value: float, digits: int = 0) -> str:
    return "-" if not math.isfinite(value) else f"{value:,.{digits}f}"


def _share(value: float) -> str:
    return "-" if not math.isfinite(value) else f"{value * 100:.1f}%"


def comparison_table(rows: list[Comparison], title: str) -> Table:
    """One row per rate: decide's latency against the pipeline's own (ms)."""
    grid = Table(title=title, title_justify="left")
    for name in (
        "rate/s", "calls", "decide p50", "decide p99", "decide max", "202s",
        "pipeline p50", "pipeline p99", "pipeline max", "p99 gap", "target",
    ):  # fmt: skip
        grid.add_column(name, justify="left" if name == "target" else "right")
    for row in rows:
        d, p = row.decide.figures, row.pipeline.figures
        grid.add_row(
            _num(row.decide.rate), str(d.count), _num(d.p50_ms, 1), _num(d.p99_ms, 1),
            _num(d.max_ms, 1), _share(d.share_202), _num(p.p50_ms, 1), _num(p.p99_ms, 1),
            _num(p.max_ms, 1), _num(d.p99_ms - p.p99_ms, 1), "met" if row.met else "not met",
        )  # fmt: skip
    return grid


def where_table(rows: list[Comparison], title: str) -> Table:
    """One row per rate: where a decide call's time goes (mean ms: as the caller sees it,
    inside the API process, the pipeline's own; one HTTP round trip of ``/health``), and the
    CPU seconds per 1,000 calls of the API, the workers and this benchmark's process."""
    grid = Table(title=title, title_justify="left")
    for name in (
        "rate/s", "decide mean", "in API mean", "pipeline mean", "/health p50", "/health p99",
        "API CPU s/1k", "workers s/1k", "bench s/1k", "pipeline: API s/1k",
    ):  # fmt: skip
        grid.add_column(name, justify="right")
    for row in rows:
        d, p = row.decide, row.pipeline
        grid.add_row(
            _num(d.rate), _num(d.figures.mean_ms, 1), _num(d.server_mean_ms, 1),
            _num(p.figures.mean_ms, 1), _num(d.health.p50_ms, 1), _num(d.health.p99_ms, 1),
            _num(d.api_cpu_per_1k, 3), _num(d.workers_cpu_per_1k, 3),
            _num(d.cpu.per_1k(d.cpu.bench_s, d.figures.count), 3), _num(p.api_cpu_per_1k, 3),
        )  # fmt: skip
    return grid


def sweep_table(steps: list[Step], title: str) -> Table:
    """One row per rate of the sweep."""
    grid = Table(title=title, title_justify="left")
    for name in (
        "rate/s", "achieved/s", "p50 ms", "p99 ms", "max ms", "202s", "errors",
        "API CPU s/1k", "workers s/1k", "held",
    ):  # fmt: skip
        grid.add_column(name, justify="left" if name == "held" else "right")
    for step in steps:
        d = step.decide.figures
        grid.add_row(
            _num(step.decide.rate), _num(step.decide.achieved), _num(d.p50_ms, 1),
            _num(d.p99_ms, 1), _num(d.max_ms, 1), _share(d.share_202), str(d.errors),
            _num(step.decide.api_cpu_per_1k, 3), _num(step.decide.workers_cpu_per_1k, 3),
            "yes" if step.held else "no",
        )  # fmt: skip
    return grid


def max_sustained(steps: list[Step]) -> float | None:
    """The most decide requests/s that held (p99 < 1 s, all 200), rates tried in order."""
    return last_held([(s.decide.rate, s.held) for s in steps])


def api_cpu_per_1k(rows: list[Comparison], steps: list[Step]) -> float:
    """CPU seconds of the API process per 1,000 decide calls, over every decide phase."""
    phases = [r.decide for r in rows] + [s.decide for s in steps]
    calls = sum(p.figures.count for p in phases if math.isfinite(p.cpu.api_s))
    used = sum(p.cpu.api_s for p in phases if math.isfinite(p.cpu.api_s))
    return used * 1000.0 / calls if calls else math.nan


def target_lines(rows: list[Comparison], steps: list[Step]) -> list[str]:
    """Whether the target is met at each rate, and the most one API process sustained."""
    lines = [
        f"target at {row.decide.rate:g}/s: decide p99 {row.decide.figures.p99_ms:.1f} ms <= "
        f"pipeline p99 {row.pipeline.figures.p99_ms:.1f} ms + {SLACK_MS:g} ms: "
        f"{'met' if row.met else 'not met'}"
        for row in rows
    ]
    best = max_sustained(steps)
    if steps:
        held = f"{best:g} requests/s" if best is not None else "none of the rates tried"
        lines.append(f"most decide requests/s one API process sustained with p99 < 1 s: {held}")
    cpu = api_cpu_per_1k(rows, steps)
    if math.isfinite(cpu) and cpu > 0:
        lines.append(
            f"the API process used {cpu:.2f} CPU s per 1,000 decide calls: a core of its own "
            f"would serve about {1000.0 / cpu:,.0f} calls/s"
        )
    return lines


def _fig(value: float, digits: int = 1) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def summary(
    rows: list[Comparison], steps: list[Step], broker: str, layout: str, **extra: object
) -> dict[str, object]:
    """The figures as one JSON object (``extra`` added at the end)."""
    rates = {}
    for row in rows:
        d, p = row.decide.figures, row.pipeline.figures
        rates[f"{row.decide.rate:g}"] = {
            "decide_p50_ms": _fig(d.p50_ms), "decide_p99_ms": _fig(d.p99_ms),
            "decide_max_ms": _fig(d.max_ms), "share_202": _fig(d.share_202, 4),
            "pipeline_p50_ms": _fig(p.p50_ms), "pipeline_p99_ms": _fig(p.p99_ms),
            "pipeline_max_ms": _fig(p.max_ms), "target_met": row.met,
            "decide_mean_ms": _fig(d.mean_ms), "in_api_mean_ms": _fig(row.decide.server_mean_ms),
            "pipeline_mean_ms": _fig(p.mean_ms),
            "health_p50_ms": _fig(row.decide.health.p50_ms),
            "health_p99_ms": _fig(row.decide.health.p99_ms),
            "api_cpu_s_per_1k": _fig(row.decide.api_cpu_per_1k, 3),
        }  # fmt: skip
    return {
        "broker": broker,
        "layout": layout,
        "rates": rates,
        "target_met": bool(rows) and all(r.met for r in rows),
        "max_decide_per_s": max_sustained(steps),
        "api_cpu_s_per_1k_decide": _fig(api_cpu_per_1k(rows, steps), 3),
        **extra,
    }


def json_line(summary_: dict[str, object]) -> str:
    """The last line of the output."""
    return json.dumps(summary_)
