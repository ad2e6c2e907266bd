"""``stream-engine api-key``: a new key printed once with the entry for ``api.keys``, whose hash
is the key's (so the entry, pasted, admits the key) - as text or as JSON."""

from __future__ import annotations

import json

import yaml
from click.testing import CliRunner
from multidict import CIMultiDict

from stream_engine.api.security import Guard, key_hash
from stream_engine.cli import main
from stream_engine.config.api_models import ApiConfig


def test_the_printed_entry_pasted_under_api_keys_admits_the_printed_key():
    result = CliRunner().invoke(main, ["api-key", "--id", "web", "--scope", "decide"])

    assert result.exit_code == 0, result.output
    first, intro, *entry = result.output.splitlines()
    key = first.removeprefix("key: ")
    assert first.startswith("key: se_")
    assert intro.endswith("under api.keys:")
    listed = yaml.safe_load("\n".join(entry))
    assert listed == [{"id": "web", "hash": key_hash(key), "scopes": ["decide"]}]
    caller = Guard(ApiConfig(keys=listed)).caller(CIMultiDict({"X-API-Key": key}))
    assert (caller.key_id, caller.scopes) == ("web", frozenset({"decide"}))


def test_json_output_gives_the_key_and_its_entry_with_every_scope_by_default():
    result = CliRunner().invoke(main, ["api-key", "--json"])

    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert set(printed) == {"key", "entry"}
    assert printed["entry"] == {
        "id": "caller",
        "hash": key_hash(printed["key"]),
        "scopes": ["decide", "submit", "read"],
    }


def test_each_call_makes_a_different_key():
    keys = {
        json.loads(CliRunner().invoke(main, ["api-key", "--json"]).output)["key"] for _ in range(3)
    }

    assert len(keys) == 3
