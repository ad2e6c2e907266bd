"""An ``HttpJsonService`` in a pipeline file: a url outside ``allowed_hosts`` is a located
error, and weak transport choices load with a warning that never shows a header value."""

from __future__ import annotations

from typing import Any

from config_helpers import base_config, errors_of, load

SECRET = "s3cr3t-token-value"


def _kyc(**params: Any) -> dict[str, Any]:
    """The base pipeline with its kyc service calling over HTTP."""
    return base_config(services={"kyc": {"class": "HttpJsonService", "params": params}})


def test_a_url_outside_allowed_hosts_is_a_located_error(tmp_path):
    config = _kyc(url="${KYC_URL}", allowed_hosts=["kyc.example"])
    errors = errors_of(tmp_path, config, environ={"KYC_URL": "http://10.0.0.7/admin"})
    assert len(errors) == 1
    assert errors[0].startswith(
        "services.kyc.params.url: host '10.0.0.7' is not in allowed_hosts (kyc.example) (line "
    )


def test_a_url_inside_allowed_hosts_loads_without_warnings(tmp_path):
    config = _kyc(url="https://kyc.example/v1", allowed_hosts=["kyc.example"])
    assert load(tmp_path, config).warnings == []


def test_weak_transport_choices_are_warnings_without_header_values(tmp_path):
    config = _kyc(url="http://kyc.example/v1", verify_tls=False, headers={"X-Api-Key": SECRET})
    warnings = load(tmp_path, config).warnings
    assert warnings == [
        "services.kyc.params.verify_tls: false: the server's certificate is not checked, so "
        "anyone on the network path can pose as the service and read requests and headers",
        "services.kyc.params.headers: X-Api-Key sent over plain http:// to kyc.example: "
        "anyone on the network path can read them; use https://",
    ]
    assert not any(SECRET in warning for warning in warnings)
