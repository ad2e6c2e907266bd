"""The example pipelines, their samples and their test cases hold together."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from example_pipelines import EXAMPLES

from stream_engine.cli import main

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "configs/samples"


def load_generator():
    spec = importlib.util.spec_from_file_location("sample_generator", SAMPLES / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sample_generator"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("pipeline", EXAMPLES)
def test_the_cases_of_each_example_pipeline_pass(pipeline):
    result = CliRunner().invoke(
        main, ["test", f"configs/{pipeline}.yaml", f"configs/cases/{pipeline}.cases.yaml"]
    )
    assert result.exit_code == 0, result.stdout
    assert ", 0 failed" in result.stdout


def test_the_sample_generator_reproduces_the_committed_files(tmp_path):
    generator = load_generator()
    for name, mix, seed in (
        ("customer_onboarding", generator.ONBOARDING_MIX, 2026),
        ("lead_enrichment", generator.LEAD_MIX, 2027),
        ("card_screening", generator.CARD_MIX, 2028),
    ):
        generator.write(tmp_path / f"{name}.jsonl", generator.build(mix, seed))
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (SAMPLES / f"{name}.jsonl").read_bytes()


MIXES = {
    "customer_onboarding": "ONBOARDING_MIX",
    "lead_enrichment": "LEAD_MIX",
    "card_screening": "CARD_MIX",
}


@pytest.mark.parametrize("pipeline", EXAMPLES)
def test_the_samples_are_decided_in_the_documented_mix(pipeline):
    expected = Counter()
    for _, count, _, status, stage in getattr(load_generator(), MIXES[pipeline]):
        expected[(status, stage)] += count
    result = CliRunner().invoke(
        main, ["eval", f"configs/{pipeline}.yaml", "--input", f"configs/samples/{pipeline}.jsonl"]
    )
    assert result.exit_code == 0
    decisions = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(decisions) == 300
    assert Counter((d["status"], d["decided_by_stage"]) for d in decisions) == expected
