"""What aiokafka's own debug lines may say: at DEBUG it logs every message it sends (key and
value) and every request and response it exchanges (records, and the SASL password bytes).
``redact_client_logs`` keeps those lines - when, where, which kind of request - without the
contents, so no log level makes a process write a record's values, its id or a secret."""

from __future__ import annotations

import logging

#: The loggers whose lines carry contents, and the message each such line starts with.
PRODUCER_LOGGER = "aiokafka.producer.producer"
CONNECTION_LOGGER = "aiokafka.conn"
_SENDING = "Sending (key="
_EXCHANGE = ("Request to ", "Response from ")


class ClientContentRedaction(logging.Filter):
    """Replaces the contents in aiokafka's debug lines by their kind (never drops a line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        args = record.args if isinstance(record.args, tuple) else ()
        if text.startswith(_SENDING) and args:
            record.msg, record.args = "Sending a message to %s", (args[-1],)
        elif text.startswith(_EXCHANGE) and args:
            record.args = (*args[:-1], type(args[-1]).__name__)
        return True


_REDACTION = ClientContentRedaction()


def redact_client_logs() -> None:
    """Install the redaction on aiokafka's loggers (once; safe to call again)."""
    for name in (PRODUCER_LOGGER, CONNECTION_LOGGER):
        logger = logging.getLogger(name)
        if _REDACTION not in logger.filters:
            logger.addFilter(_REDACTION)
