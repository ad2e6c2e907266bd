"""Checks of what a configuration could give away: PII fields left unprotected, a hash or
envelope key written into the file, a password sent in clear text. Mostly warnings: the
configuration works, but protects less than it seems to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stream_engine.config.loader import written_literally
from stream_engine.config.models import PipelineConfig
from stream_engine.config.problems import Problems

#: Below this many bytes a ``pii.hash_key`` draws a warning: with one value and its hash (an
#: applicant's own SSN and a decision), a short key is found by trying keys (a 1-character key
#: fell in 0.13 s); 16 random bytes are out of reach.
MIN_HASH_KEY_BYTES = 16


def check_kafka(problems: Problems, top: PipelineConfig | None) -> None:
    """Warn where the connection gives a secret away."""
    if top is None:
        return
    kafka = top.kafka
    if kafka.security_protocol == "SASL_PLAINTEXT" and kafka.sasl_mechanism in (None, "PLAIN"):
        problems.warnings.append(
            "kafka.security_protocol: SASL_PLAINTEXT with the PLAIN mechanism sends the "
            "password in clear text; use SASL_SSL, or a SCRAM mechanism"
        )


def check_envelope_keys(problems: Problems, written: Mapping[str, Any]) -> None:
    """A key written into the file travels with every copy of it: warn, and say how."""
    runtime = written.get("runtime")
    keys = runtime.get("envelope_keys") if isinstance(runtime, dict) else None
    for key_id, value in keys.items() if isinstance(keys, dict) else ():
        if written_literally(value):
            problems.warnings.append(
                f"runtime.envelope_keys.{key_id}: the key is written in the file; give it "
                "as ${VAR} (or $STREAM_ENGINE_ENVELOPE_KEY) so it stays out of the file"
            )


def check_pii(
    problems: Problems,
    data: Mapping[str, Any],
    written: Mapping[str, Any],
    top: PipelineConfig | None,
) -> None:
    """``pii_fields`` lists each field once, as a name or a dotted path; ``date_fields``
    are among them; warn where the protection is weaker than it looks (record ids taken
    from a PII field, a hash key that is missing, short or written in the file, a ``pii``
    section that protects nothing)."""
    seen = _pii_fields(problems, data.get("pii_fields"))
    if top is None:
        return
    pii = top.pii
    for i, name in enumerate(pii.date_fields):
        if name not in seen:
            problems.error(("pii", "date_fields", i), f"'{name}' is not listed in pii_fields")
    configured = isinstance(data.get("pii"), dict) and bool(data["pii"])
    if configured and not top.pii_fields:
        problems.warnings.append("pii: no pii_fields are listed, so nothing is protected")
    if not top.pii_fields:
        return
    key = pii.hash_key.get_secret_value() if pii.hash_key else None
    _check_hash_key(problems, pii.mode, key, written)
    for name in ("key_field", "tenant_field"):
        field_name = getattr(top.input, name)
        if field_name in seen:
            problems.warnings.append(
                f"input.{name}: '{field_name}' is a PII field, and its value is carried "
                "unprotected (Kafka keys, record ids, dead-letter headers, decisions)"
            )


def _pii_fields(problems: Problems, raw: Any) -> set[str]:
    """The names ``pii_fields`` lists; a name listed twice, or a path with an empty part
    (``applicant..ssn``), is an error at its place."""
    seen: set[str] = set()
    for i, name in enumerate(raw if isinstance(raw, list) else ()):
        if not isinstance(name, str) or not name:
            continue
        if name in seen:
            problems.error(("pii_fields", i), f"'{name}' is listed twice")
        elif "" in name.split("."):
            problems.error(
                ("pii_fields", i),
                f"'{name}' has an empty part: name a field, or a path like applicant.ssn",
            )
        seen.add(name)
    return seen


def _check_hash_key(
    problems: Problems, mode: str, key: str | None, written: Mapping[str, Any]
) -> None:
    """Warnings about ``pii.hash_key``: missing in hash mode, unused in mask mode, too
    short, or written in the file instead of read from the environment."""
    if mode == "hash" and key is None:
        problems.warnings.append(
            "pii.mode: hash without pii.hash_key is plain SHA-256, which a dictionary of "
            "all SSNs or dates of birth reverses; set pii.hash_key: ${VAR}"
        )
    if key is None:
        return
    if mode == "mask":
        problems.warnings.append(
            "pii.hash_key: with pii.mode: mask it only hashes the PII keys of stateful rules' "
            "stores, changelogs and partition keys"
        )
    size = len(key.encode("utf-8"))
    if size < MIN_HASH_KEY_BYTES:
        problems.warnings.append(
            f"pii.hash_key: {size} byte(s) is short: anyone who knows one value and its "
            "hash can find a short key by trying keys, and then reverse every hash; use "
            f"at least {MIN_HASH_KEY_BYTES} random bytes (e.g. openssl rand -hex 32)"
        )
    pii = written.get("pii")
    if isinstance(pii, dict) and written_literally(pii.get("hash_key")):
        problems.warnings.append(
            "pii.hash_key: written in the file (as text or a ${VAR:-default}): anyone who "
            "can read the file or its history can reverse the hashes; read it from the "
            "environment only, hash_key: ${PII_HASH_KEY}"
        )
