"""benchmarks/report.py: the lines that say whether issue 6's targets are met."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.report import target_lines


def test_each_target_reports_its_ratio_and_whether_it_is_met():
    rates = {"stream_engine": 2_000.0, "quixstreams": 4_000.0, "raw_aiokafka": 3_000.0}
    assert target_lines(rates) == [
        "target: stream_engine / quixstreams = 0.50 (at least 1): not met",
        "target: stream_engine / raw_aiokafka = 0.67 (at least 0.5): met",
    ]


def test_a_target_whose_systems_did_not_both_run_is_left_out():
    assert target_lines({"stream_engine": 2_000.0, "quixstreams": None}) == []
    assert target_lines({"stream_engine": None, "raw_aiokafka": 10.0}) == []
