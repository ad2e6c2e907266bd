"""Safe by construction: a pipeline file cannot run Python or import a module by path - not
through a class name, a CEL expression or a YAML tag. Each attempt is refused by
``stream-engine validate`` with a located error (exit 1, no traceback), and the side effect it
aimed for never happens. Connection secrets never appear in what ``validate`` and ``plan``
print, nor in the logs."""

from __future__ import annotations

import logging
import os
import re
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner, Result

from stream_engine.cli import main
from stream_engine.pipeline import load_pipeline
from stream_engine.runtime.cluster.settings import KafkaSettings

LOCATED = re.compile(r"^error: [\w.\[\]-]+: .+ \(line \d+\)$")
SECRET = "s3cr3t-sasl-password"
PII_KEY = "s3cr3t-pii-hash-key"


def validate(path: Path, *options: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, ["validate", str(path), *options], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def assert_refused(result: Result, location: str, *words: str) -> None:
    """Exit 1, one located error at ``location`` saying ``words``, no traceback."""
    assert result.exit_code == 1, result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors, result.stderr
    mine = [e for e in errors if e.startswith(f"error: {location}: ")]
    assert len(mine) == 1, errors
    assert LOCATED.match(mine[0]), mine[0]
    for word in words:
        assert word in mine[0]
    assert "Traceback" not in result.stdout + result.stderr


def pipeline_text(rule: str = "{class: RequiredFields, params: {fields: [name]}}") -> str:
    return f"pipeline: demo\nstages:\n  checks:\n    rules:\n      r: {rule}\n"


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """A file that exists only if a payload ran."""
    return tmp_path / "pwned"


# -- class names --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "os.system",
        "builtins.eval",
        "builtins:exec",
        "subprocess.Popen",
        "stream_engine.rules.text:TrimWhitespace",
        "stream_engine.rules.text.TrimWhitespace",
    ],
)
def test_a_rule_class_cannot_name_python_by_path(tmp_path, marker, name):
    payload = f"open({str(marker)!r}, 'w').close()"
    rule = f"{{class: {name!r}, params: {{command: 'touch {marker}', source: {payload!r}}}}}"
    path = tmp_path / "pipeline.yaml"
    path.write_text(pipeline_text(rule))

    assert_refused(validate(path), "stages.checks.rules.r.class", f"unknown rule class '{name}'")
    assert not marker.exists()


def test_a_service_class_cannot_name_python_by_path(tmp_path, marker):
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        pipeline_text()
        + f"services:\n  shell: {{class: os.system, params: {{command: 'touch {marker}'}}}}\n"
    )
    assert_refused(validate(path), "services.shell.class", "unknown service class 'os.system'")
    assert not marker.exists()


# -- CEL ----------------------------------------------------------------------------------

CEL_ATTEMPTS = [
    "__import__('os').system('touch {marker}') == 0",
    "os.system('touch {marker}') == 0",
    "eval(\"open('{marker}', 'w')\") != null",
]


@pytest.mark.parametrize("source", CEL_ATTEMPTS)
@pytest.mark.parametrize(
    ("where", "location"),
    [
        ("condition", "stages.checks.condition"),
        ("when", "stages.checks.rules.r.when"),
        ("expr", "stages.checks.rules.r.params.expr"),
    ],
)
def test_a_cel_expression_cannot_call_python(tmp_path, marker, source, where, location):
    expression = source.format(marker=marker)
    stage: dict[str, Any] = {
        "rules": {"r": {"class": "RequiredFields", "params": {"fields": ["a"]}}}
    }
    if where == "condition":
        stage["condition"] = expression
    elif where == "when":
        stage["rules"]["r"]["when"] = expression
    else:
        stage["rules"]["r"] = {
            "class": "DerivedField",
            "params": {"field": "x", "expr": expression},
        }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"pipeline": "demo", "stages": {"checks": stage}}))

    assert_refused(validate(path), location, "unknown function")
    assert not marker.exists()
    result = CliRunner().invoke(main, ["eval", str(path)], input='{"a": 1, "explode": true}\n')
    assert result.exit_code == 1
    assert not marker.exists()


# -- YAML tags ----------------------------------------------------------------------------

YAML_ATTEMPTS = [
    ("rule", "r: !!python/object/apply:os.system ['touch {marker}']", "stages.checks.rules.r"),
    (
        "class",
        "r: {{class: !!python/object/apply:os.system ['touch {marker}'], params: {{}}}}",
        "stages.checks.rules.r.class",
    ),
    (
        "param",
        "r: {{class: RequiredFields, params: {{fields: !!python/object/new:os.system "
        "['touch {marker}']}}}}",
        "stages.checks.rules.r.params.fields",
    ),
    (
        "name",
        "r: {{class: !!python/name:os.system '', params: {{}}}}",
        "stages.checks.rules.r.class",
    ),
]


@pytest.mark.parametrize(
    ("_", "rule", "location"), YAML_ATTEMPTS, ids=[a[0] for a in YAML_ATTEMPTS]
)
def test_a_yaml_python_tag_is_refused_and_never_constructed(tmp_path, marker, _, rule, location):
    text = (
        "pipeline: demo\nstages:\n  checks:\n    rules:\n      " + rule.format(marker=marker) + "\n"
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)

    assert_refused(validate(path), location, "YAML tag '!!python/", "is not allowed")
    assert not marker.exists()


def test_the_yaml_payload_is_live_so_its_absence_proves_it_was_not_constructed(tmp_path, marker):
    text = pipeline_text(f"!!python/object/apply:os.system ['touch {marker}']")
    yaml.unsafe_load(text)  # what an unsafe loader would do with the same file
    assert marker.exists()


def test_a_local_yaml_tag_is_refused_too(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(pipeline_text("{class: !Ref RequiredFields, params: {fields: [a]}}"))
    assert_refused(validate(path), "stages.checks.rules.r.class", "YAML tag '!Ref'")


# -- connection secrets -------------------------------------------------------------------


def secret_pipeline(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        pipeline_text()
        + "kafka:\n"
        + "  bootstrap_servers: broker-1:9093\n"
        + "  security_protocol: SASL_SSL\n"
        + "  sasl_mechanism: SCRAM-SHA-512\n"
        + "  sasl_username: stream-engine\n"
        + "  sasl_password: ${SECRET}\n"
        + "pii_fields: [ssn]\n"
        + "pii:\n  mode: hash\n  hash_key: ${PII_KEY}\n"
        + extra
    )
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["validate"],
        ["validate", "--format", "json"],
        ["plan"],
        ["plan", "--format", "json"],
        ["plan", "--format", "mermaid"],
    ],
)
def test_secrets_never_appear_in_validate_or_plan_output(tmp_path, command):
    path = secret_pipeline(tmp_path)
    env = {"SECRET": SECRET, "PII_KEY": PII_KEY}
    result = CliRunner().invoke(main, [command[0], str(path), *command[1:]], env=env)
    assert result.exit_code == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert PII_KEY not in result.stdout + result.stderr


def test_secrets_never_appear_in_the_errors_of_a_broken_config(tmp_path):
    path = secret_pipeline(tmp_path, "runtime:\n  batch_size: ${SECRET}\n")
    for options in ([], ["--format", "json"]):
        result = validate(path, *options, env={"SECRET": SECRET, "PII_KEY": PII_KEY})
        assert result.exit_code == 1
        assert "runtime.batch_size" in result.stdout + result.stderr
        assert SECRET not in result.stdout + result.stderr


def test_secrets_never_appear_in_logs_or_in_what_would_be_logged(tmp_path, caplog, monkeypatch):
    monkeypatch.setitem(os.environ, "SECRET", SECRET)
    monkeypatch.setitem(os.environ, "PII_KEY", PII_KEY)
    caplog.set_level(logging.DEBUG)
    pipeline = load_pipeline(secret_pipeline(tmp_path))
    settings = KafkaSettings.resolve(pipeline.config.kafka)
    assert settings.sasl_password == SECRET  # it is there, for the client
    logging.getLogger("stream_engine").info("connecting to %s", settings.describe())
    shown = [caplog.text, repr(settings), repr(pipeline.config), repr(pipeline.plan)]
    shown += [str(pipeline.config.kafka), pipeline.config.model_dump_json()]
    for text in shown:
        assert SECRET not in text
        assert PII_KEY not in text


def test_plan_says_how_pii_is_protected_and_whether_keyed_but_never_the_key(tmp_path):
    path = secret_pipeline(tmp_path)
    env = {"SECRET": SECRET, "PII_KEY": PII_KEY}
    result = CliRunner().invoke(main, ["plan", str(path), "--format", "json"], env=env)
    summary = orjson.loads(result.stdout)
    assert summary["pii"] == {
        "fields": ["ssn"],
        "mode": "hash",
        "keyed": True,
        "mask_decisions": False,
    }
    table = CliRunner().invoke(main, ["plan", str(path)], env=env).stdout
    assert "pii: ssn hashed in messages, reasons, dead-letter headers, logs" in table


def kafka_pipeline(tmp_path: Path, protocol: str, mechanism: str | None) -> Path:
    path = tmp_path / "pipeline.yaml"
    mechanism_line = f"  sasl_mechanism: {mechanism}\n" if mechanism else ""
    path.write_text(
        pipeline_text()
        + f"kafka:\n  security_protocol: {protocol}\n{mechanism_line}"
        + "  sasl_username: stream-engine\n  sasl_password: ${SECRET}\n"
    )
    return path


@pytest.mark.parametrize("mechanism", ["PLAIN", None])  # aiokafka's default is PLAIN
def test_validate_warns_that_sasl_plain_without_tls_sends_the_password_in_clear(
    tmp_path, mechanism
):
    path = kafka_pipeline(tmp_path, "SASL_PLAINTEXT", mechanism)
    text = validate(path, env={"SECRET": SECRET})
    as_json = orjson.loads(validate(path, "--format", "json", env={"SECRET": SECRET}).stdout)
    warning = (
        "kafka.security_protocol: SASL_PLAINTEXT with the PLAIN mechanism sends the password "
        "in clear text; use SASL_SSL, or a SCRAM mechanism"
    )
    assert text.exit_code == 0
    assert f"warning: {warning}" in text.stdout
    assert as_json["warnings"] == [warning]
    assert SECRET not in text.stdout + text.stderr


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [("SASL_SSL", "PLAIN"), ("SASL_PLAINTEXT", "SCRAM-SHA-512"), ("PLAINTEXT", None)],
)
def test_no_sasl_warning_where_the_password_is_not_sent_in_clear(tmp_path, protocol, mechanism):
    path = kafka_pipeline(tmp_path, protocol, mechanism)
    assert load_pipeline(path, environ={"SECRET": SECRET}).warnings == []


# -- bounded reading ----------------------------------------------------------------------


def _bomb() -> str:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\n" + pipeline_text()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (_bomb(), "expands to 66,430 values; one alias may expand to at most 10,000"),
        ("x: " + "[" * 10_000 + "]" * 10_000 + "\n" + pipeline_text(), "levels deep"),
        ("loop: &l [*l]\n" + pipeline_text(), "a cycle"),
    ],
    ids=["alias-bomb", "nested-10000-deep", "alias-cycle"],
)
def test_validate_answers_a_hostile_yaml_file_in_one_line_within_bounded_memory(
    tmp_path, text, problem
):
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    limit = 1536 * 1024 * 1024  # the bomb needs many times this, unbounded

    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    result = subprocess.run(
        [sys.executable, "-m", "stream_engine", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=bounded,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {path}:")
    assert problem in result.stderr
