"""A store's figures for the metrics: a leaf, so the metrics need nothing of Kafka."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StoreFigures:
    """A store's figures over this worker's partitions, for the metrics."""

    store: str
    entries: int
    expired: int
    late: int
    #: Changelog messages to read when each partition last began restoring, summed.
    restore_lag: int
    rejected: int
