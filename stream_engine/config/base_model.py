"""The base of every model of the pipeline file."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigModel(BaseModel):
    """Unknown keys are refused, a key's other spellings accepted, and values frozen."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
