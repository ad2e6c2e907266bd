"""Measuring the system under test: CPU time and resident memory of its processes (psutil,
sampled every 0.2 s, children included), and latency percentiles."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psutil


@dataclass(frozen=True, slots=True)
class Sample:
    """CPU seconds used so far and RSS bytes now, summed over a process tree, at ``t``."""

    t: float
    cpu_s: float
    rss: int


def _cpu_seconds(process: psutil.Process, children: bool) -> float:
    times = process.cpu_times()
    own: float = times.user + times.system
    return own + times.children_user + times.children_system if children else own


@dataclass
class ProcessTree:
    """Processes started for one system, with everything they start; a process that ends
    keeps contributing the CPU time it had used when last seen."""

    roots: list[psutil.Process]
    recursive: bool = True
    _last_cpu: dict[int, float] = field(default_factory=dict)

    @classmethod
    def of(cls, pids: Sequence[int], recursive: bool = True) -> ProcessTree:
        """The trees under ``pids`` (ids of processes that are running); with ``recursive``
        false, just those processes."""
        return cls([psutil.Process(pid) for pid in pids], recursive)

    def members(self) -> list[psutil.Process]:
        """The roots and all their descendants that are alive now."""
        found: list[psutil.Process] = []
        for root in self.roots:
            with contextlib.suppress(psutil.Error):
                found.append(root)
                if self.recursive:
                    found.extend(root.children(recursive=True))
        return found

    def sample(self, now: float) -> Sample:
        """Total CPU seconds so far and current RSS."""
        rss = 0
        for process in self.members():
            try:
                with process.oneshot():
                    self._last_cpu[process.pid] = _cpu_seconds(process, self.recursive)
                    rss += process.memory_info().rss
            except psutil.Error:
                continue
        return Sample(now, sum(self._last_cpu.values()), rss)


@dataclass
class Monitor:
    """Samples a process tree every ``interval_s`` into a time series."""

    tree: ProcessTree
    clock: Callable[[], float]
    interval_s: float = 0.2
    samples: list[Sample] = field(default_factory=list)

    def sample(self) -> Sample:
        """Take one sample now."""
        taken = self.tree.sample(self.clock())
        self.samples.append(taken)
        return taken

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(self.interval_s)

    @property
    def peak_rss(self) -> int:
        """The largest summed RSS seen."""
        return max((s.rss for s in self.samples), default=0)

    @property
    def cpu_total(self) -> float:
        """CPU seconds at the last sample (everything since the processes started)."""
        return self.samples[-1].cpu_s if self.samples else 0.0

    def cpu_at(self, t: float) -> float:
        """CPU seconds used by time ``t``, interpolated between samples."""
        if not self.samples:
            return 0.0
        times = [s.t for s in self.samples]
        i = bisect.bisect_left(times, t)
        if i == 0:
            return self.samples[0].cpu_s
        if i >= len(self.samples):
            return self.samples[-1].cpu_s
        before, after = self.samples[i - 1], self.samples[i]
        share = (t - before.t) / (after.t - before.t) if after.t > before.t else 1.0
        return before.cpu_s + share * (after.cpu_s - before.cpu_s)

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds used between two times."""
        return max(0.0, self.cpu_at(end) - self.cpu_at(start))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100, nearest rank) of ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]
