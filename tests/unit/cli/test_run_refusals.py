"""``stream-engine run`` refuses to start, in one line and exit 1, where a worker would be
unsafe: no envelope key while envelopes are authenticated."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from stream_engine.cli import main
from stream_engine.runtime.stage.integrity import KEY_ENV

ONBOARDING = Path(__file__).resolve().parents[3] / "configs" / "customer_onboarding.yaml"


def test_run_without_an_envelope_key_refuses_in_one_line_naming_the_fix(monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    result = CliRunner().invoke(
        main, ["run", str(ONBOARDING), "--broker", "127.0.0.1:1", "--metrics-port", "0"]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: runtime.envelope_keys: no envelope key")
    assert "runtime.envelope_auth: off" in lines[0]
    assert "Traceback" not in result.output
