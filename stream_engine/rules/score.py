"""Weighted score with categories (seed 000's risk score aggregation)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from stream_engine.core.expr import NOW, Expression, Scope
from stream_engine.core.outcome import Outcome
from stream_engine.core.pii import PiiInputs
from stream_engine.core.result import Verdict, failed, needs_review, passed
from stream_engine.core.rule import Placed, RuleContext
from stream_engine.errors import RuleEvaluationError
from stream_engine.rules.base import CelSource, ConfiguredRule, RuleParams, register_rule
from stream_engine.rules.fields import as_number


class Component(RuleParams):
    field: str = Field(description="the numeric field this component reads")
    weight: float = Field(gt=0, description="its weight in the average (> 0)")
    transform: CelSource | None = Field(
        None, description="CEL over `value` (a double) giving the component's score"
    )


class Category(RuleParams):
    name: str = Field(description="the category's name, written to category_field")
    below: float | None = Field(
        None, description="scores below this bound fall in it (the last category has none)"
    )


class WeightedScoreParams(RuleParams):
    components: dict[str, Component] = Field(
        min_length=1, description="name → {field, weight, transform}: what the score averages"
    )
    score_field: str = Field("score", description="the field the score is written to")
    category_field: str | None = Field(
        "score_category",
        description="the field the category is written to (none: not written)",
    )
    categories: list[Category] = Field(
        default_factory=list,
        description="{name, below} in increasing order of below; the last has no bound",
    )
    min_components: int = Field(
        1, ge=1, description="FAIL when fewer components than this have a number"
    )
    review_categories: list[str] = Field(
        default_factory=list, description="categories that send the record to review"
    )
    fail_categories: list[str] = Field(
        default_factory=list, description="categories that FAIL the rule"
    )

    @model_validator(mode="after")
    def _categories(self) -> WeightedScoreParams:
        bounds = [c.below for c in self.categories]
        if bounds and bounds[-1] is not None:
            raise ValueError("the last category must have no 'below' bound (it takes the rest)")
        if any(b is None for b in bounds[:-1]):
            raise ValueError("every category but the last needs a 'below' bound")
        numbers = [b for b in bounds if b is not None]
        if numbers != sorted(numbers):
            raise ValueError("category bounds must increase")
        names = {c.name for c in self.categories}
        for listed in (*self.review_categories, *self.fail_categories):
            if listed not in names:
                raise ValueError(f"unknown category '{listed}'")
        return self


@register_rule("WeightedScore")
class WeightedScore(ConfiguredRule[WeightedScoreParams]):
    """Combine numeric fields into a weighted average (each optionally transformed by CEL),
    write the score and its category, and FAIL or ask for review on chosen categories.
    Absent components are left out and the weights renormalised. A component read from a PII
    field is named in the details without its value, and a score it counts in is left out of
    the message and details (the others' values would give it away); the category stays."""

    Params = WeightedScoreParams
    #: The components read from PII fields (set by ``learn_pii``).
    _hidden: frozenset[str] = frozenset()

    def __init__(self, params: WeightedScoreParams) -> None:
        super().__init__(params)
        self._components = [
            (name, c.field, c.weight, Expression(c.transform) if c.transform else None)
            for name, c in params.components.items()
        ]

    def expressions(self) -> list[Placed]:
        scope = Scope(frozenset({"value", NOW}))
        return [
            (("components", name, "transform"), transform, scope)
            for name, _, _, transform in self._components
            if transform is not None
        ]

    def provides(self) -> tuple[str, ...]:
        p = self.params
        return (p.score_field, p.category_field) if p.category_field else (p.score_field,)

    def learn_pii(self, pii: PiiInputs) -> list[str]:
        """Which components' values (and scores they count in) the details leave out."""
        self._hidden = frozenset(
            name for name, component in self.params.components.items() if pii.hides(component.field)
        )
        return []

    def evaluate(self, ctx: RuleContext) -> Verdict:
        p = self.params
        total = weight_sum = 0.0
        used: dict[str, float] = {}
        for name, field, weight, transform in self._components:
            value = as_number(ctx.data.get(field))
            if value is None:
                continue
            score: Any = (
                value
                if transform is None
                else transform.evaluate(extra={"value": value}, now=ctx.now)
            )
            number = as_number(score)
            if number is None:
                continue
            used[name] = round(number, 6)
            total += number * weight
            weight_sum += weight
        hidden = self._hidden.intersection(used) if self._hidden else self._hidden
        shown = _without(used, hidden)
        if len(used) < p.min_components:
            return failed(
                f"only {len(used)} of {len(self._components)} score components available",
                components=shown,
            )
        score_value = round(total / weight_sum, 6)
        if not math.isfinite(score_value):
            raise RuleEvaluationError(
                f"{p.score_field}: the score is {score_value}, a number JSON cannot carry"
            )
        ctx.data[p.score_field] = score_value
        category = self._category(score_value)
        if p.category_field and category is not None:
            ctx.data[p.category_field] = category
        details: dict[str, Any] = {} if hidden else {"score": score_value}
        details["category"] = category
        details["components"] = shown
        shown_score = "computed" if hidden else f"{score_value:.3f}"
        message = f"score {shown_score}" + (f" ({category})" if category else "")
        if category in p.fail_categories:
            return failed(message, **details)
        if category in p.review_categories:
            return needs_review(message, Outcome.PASS, **details)
        return passed(message, **details)

    def _category(self, score: float) -> str | None:
        for category in self.params.categories:
            if category.below is None or score < category.below:
                return category.name
        return None


def _without(used: dict[str, float], hidden: frozenset[str]) -> Mapping[str, float | None]:
    """The components as the details show them: those in ``hidden`` without their value."""
    if not hidden:
        return used
    return {name: None if name in hidden else value for name, value in used.items()}
