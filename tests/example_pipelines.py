"""The example pipelines of configs/, for the tests that go through every one of them."""

from __future__ import annotations

EXAMPLES = ("customer_onboarding", "lead_enrichment", "card_screening")
