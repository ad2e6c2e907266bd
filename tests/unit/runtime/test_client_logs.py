"""aiokafka's debug lines keep saying what happens - a send, a request of some kind - but
never what a message holds nor the bytes of a request (records, SASL passwords)."""

from __future__ import annotations

import logging

import pytest

from stream_engine.runtime.cluster.client_logs import (
    CONNECTION_LOGGER,
    PRODUCER_LOGGER,
    redact_client_logs,
)


class SaslAuthenticateRequest:
    def __repr__(self) -> str:
        return "SaslAuthenticateRequest(auth_bytes=b'\\x00svc\\x00hunter2')"


def test_a_send_and_a_request_are_logged_by_kind_without_their_contents(
    caplog: pytest.LogCaptureFixture,
):
    redact_client_logs()
    redact_client_logs()  # twice: still one filter
    caplog.set_level(logging.DEBUG, logger=PRODUCER_LOGGER)
    caplog.set_level(logging.DEBUG, logger=CONNECTION_LOGGER)

    logging.getLogger(PRODUCER_LOGGER).debug(
        "Sending (key=%s value=%s) to %s", b"APP-1", b'{"ssn":"123-45-6789"}', "input-0"
    )
    logging.getLogger(CONNECTION_LOGGER).debug(
        "Request to %s:%d %d: %s", "broker", 9092, 7, SaslAuthenticateRequest()
    )

    assert caplog.messages == [
        "Sending a message to input-0",
        "Request to broker:9092 7: SaslAuthenticateRequest",
    ]
    assert len(logging.getLogger(PRODUCER_LOGGER).filters) == 1
