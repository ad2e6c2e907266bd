"""Which origin ``Access-Control-Allow-Origin`` names: a listed origin exactly, ``*`` only when
``*`` itself is listed, nothing for any other (the HTTP behaviour: test_api_security.py)."""

from __future__ import annotations

from stream_engine.api.cors import Cors
from stream_engine.config.api_models import ApiCorsConfig


def test_only_an_exactly_listed_origin_is_allowed():
    cors = Cors(ApiCorsConfig(origins=["https://app.example"]))

    assert cors.allowed("https://app.example") == "https://app.example"
    for other in ("http://app.example", "https://app.example:8443", "https://APP.example", "*"):
        assert cors.allowed(other) is None, other
    assert cors.allowed(None) is None


def test_any_origin_is_allowed_as_star_only_when_star_is_listed():
    cors = Cors(ApiCorsConfig(origins=["https://app.example", "*"]))

    assert cors.allowed("https://app.example") == "https://app.example"
    assert cors.allowed("https://elsewhere.example") == "*"
    assert cors.allowed(None) is None
