"""``stream-engine serve`` refuses a configuration that would expose the API - no keys and not
anonymous, a TLS certificate it cannot load - in one line and exit 1, before it reaches for
the broker (the broker given here is one nobody runs: reaching for it would be a different
error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from stream_engine.api.security import key_hash
from stream_engine.cli import main

NOBODY = "127.0.0.1:1"


def serve(tmp_path: Path, api: dict[str, Any]) -> Result:
    rule = {"class": "RequiredFields", "params": {"fields": ["name"]}}
    config = {
        "pipeline": "serve_demo",
        "version": "1.0",
        "stages": {"checks": {"rules": {"required": rule}}},
        "api": api,
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return CliRunner().invoke(main, ["serve", str(path), "--broker", NOBODY, "--api-port", "0"])


def test_serve_without_keys_and_not_anonymous_refuses_in_one_line_before_connecting(
    tmp_path: Path,
):
    result = serve(tmp_path, {})

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: api.keys: no API keys: list callers with their key hashes ('stream-engine "
        "api-key' makes one), or set api.anonymous: true to let anyone decide"
    ]


def test_serve_with_a_certificate_it_cannot_read_refuses_in_one_line_before_connecting(
    tmp_path: Path,
):
    tls = {"cert_file": str(tmp_path / "none.pem"), "key_file": str(tmp_path / "none.key")}
    result = serve(tmp_path, {"keys": [{"id": "web", "hash": key_hash("k")}], "tls": tls})

    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: api.tls: cannot load the certificate or key: ")


def test_serve_anonymous_on_purpose_goes_on_to_the_broker(tmp_path: Path):
    result = serve(tmp_path, {"anonymous": True})

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: broker {NOBODY} (PLAINTEXT): cannot connect to any bootstrap server; "
        "is it running and reachable?"
    ]
