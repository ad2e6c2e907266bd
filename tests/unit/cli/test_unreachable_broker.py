"""Every command that connects to Kafka, against a broker nobody runs: exit 1 and one line on
stderr naming the broker - never a traceback, nor aiokafka's own log lines."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CONFIG = str(ROOT / "configs/customer_onboarding.yaml")
SAMPLES = str(ROOT / "configs/samples/customer_onboarding.jsonl")
NOBODY = "127.0.0.1:1"

COMMANDS = [
    ["run", CONFIG, "--metrics-port", "0"],
    ["topics", "create", CONFIG],
    ["topics", "list", CONFIG],
    ["publish", CONFIG, SAMPLES],
    ["tail", CONFIG, "decisions", "--count", "1"],
    ["dlq", "replay", CONFIG],
]


def cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_engine", *args, "--broker", NOBODY],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def test_every_command_that_connects_fails_in_one_line_against_an_unreachable_broker():
    with ThreadPoolExecutor(max_workers=len(COMMANDS)) as pool:
        results = list(pool.map(cli, COMMANDS))

    want = (
        f"error: broker {NOBODY} (PLAINTEXT): cannot connect to any bootstrap server; "
        "is it running and reachable?"
    )
    for args, result in zip(COMMANDS, results, strict=True):
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.splitlines() == [want], (args, result.stderr)
