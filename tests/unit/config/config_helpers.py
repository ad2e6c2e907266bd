"""Writing small pipeline files for config tests and collecting their errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stream_engine.config.compiled import CompiledPipeline
from stream_engine.errors import ConfigError, ConfigErrors
from stream_engine.pipeline import load_pipeline


def base_config(**overrides: Any) -> dict[str, Any]:
    """A small valid pipeline: two stages, one service."""
    config: dict[str, Any] = {
        "pipeline": "demo",
        "version": "1.0",
        "services": {
            "kyc": {"class": "SimulatedService", "params": {"fields": {"verified": "true"}}},
        },
        "stages": {
            "data_quality": {
                "rules": {
                    "required": {"class": "RequiredFields", "params": {"fields": ["name"]}},
                    "email": {
                        "class": "EmailFormat",
                        "params": {"field": "email"},
                        "dependencies": ["required"],
                    },
                }
            },
            "compliance": {
                "rules": {
                    "kyc_check": {
                        "class": "ServiceCheck",
                        "params": {"service": "kyc", "pass_when": "response.verified"},
                        "cross_stage_dependencies": ["required"],
                    }
                }
            },
        },
    }
    config.update(overrides)
    return config


def write(tmp_path: Path, config: dict[str, Any] | str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
    path.write_text(text)
    return path


def load(tmp_path: Path, config: dict[str, Any] | str, **kwargs: Any) -> CompiledPipeline:
    return load_pipeline(write(tmp_path, config), **kwargs)


def errors_of(tmp_path: Path, config: dict[str, Any] | str, **kwargs: Any) -> list[str]:
    """Every error line the config produces (fails the test if it loads)."""
    try:
        load(tmp_path, config, **kwargs)
    except ConfigErrors as exc:
        return [str(e) for e in exc.errors]
    except ConfigError as exc:
        return [str(exc)]
    raise AssertionError("the configuration loaded without errors")
