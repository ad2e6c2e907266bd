"""The pipeline file: pydantic models, loading with overlays and interpolation, validation."""
