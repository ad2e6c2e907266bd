"""Running one rule on one record, as the executor would."""

from __future__ import annotations

import asyncio
from typing import Any

from stream_engine.core.result import Verdict
from stream_engine.core.rule import RuleContext
from stream_engine.rules import RULES


def make(name: str, **params: Any) -> Any:
    """A registered rule built from params (validated as a config would be)."""
    return RULES.get(name).from_params(params)


def check(rule: Any, data: dict[str, Any], results: dict | None = None) -> tuple[Verdict, dict]:
    """Evaluate; returns the verdict and the record as the rule left it."""
    ctx = RuleContext("r1", dict(data), dict(results or {}))
    verdict = rule.evaluate(ctx)
    if not isinstance(verdict, Verdict):
        verdict = asyncio.run(verdict)
    return verdict, ctx.data
