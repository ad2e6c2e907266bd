"""The built-in rule library. Importing this package registers every built-in rule."""

from stream_engine.rules import (
    dates,
    email,
    expressions,
    fields,
    ids,
    names,
    phone,
    score,
    service,
    stateful,
    text,
)
from stream_engine.rules.base import RULES, ConfiguredRule, RuleParams, register_rule

__all__ = [
    "RULES",
    "ConfiguredRule",
    "RuleParams",
    "dates",
    "email",
    "expressions",
    "fields",
    "ids",
    "names",
    "phone",
    "register_rule",
    "score",
    "service",
    "stateful",
    "text",
]
