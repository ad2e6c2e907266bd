"""Kafka connection settings: the config, then STREAM_ENGINE_* variables, then --broker; the
keyword arguments aiokafka gets; and a password that never shows in a description or repr."""

from __future__ import annotations

import ssl

import pytest
from pydantic import SecretStr

from stream_engine.config.models import KafkaConfig
from stream_engine.runtime.cluster.settings import KafkaSettings

PASSWORD = "s3cr3t-Pa55word"

SASL_CONFIG = KafkaConfig(
    bootstrap_servers="kafka-1.internal:9093,kafka-2.internal:9093",
    security_protocol="SASL_PLAINTEXT",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="engine",
    sasl_password=SecretStr(PASSWORD),
    client_id="onboarding-workers",
)

ENVIRONMENT = {
    "STREAM_ENGINE_BROKER": "env-broker:9092",
    "STREAM_ENGINE_SECURITY_PROTOCOL": "SASL_SSL",
    "STREAM_ENGINE_SASL_MECHANISM": "PLAIN",
    "STREAM_ENGINE_SASL_USERNAME": "env-user",
    "STREAM_ENGINE_SASL_PASSWORD": "env-" + PASSWORD,
    "STREAM_ENGINE_SSL_CAFILE": "/etc/ssl/env-ca.pem",
}


def test_config_values_are_used_when_nothing_overrides_them():
    settings = KafkaSettings.resolve(SASL_CONFIG, environ={})
    assert settings == KafkaSettings(
        bootstrap_servers="kafka-1.internal:9093,kafka-2.internal:9093",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="engine",
        sasl_password=PASSWORD,
        ssl_cafile=None,
        client_id="onboarding-workers",
    )


def test_without_a_config_the_default_is_a_local_plaintext_broker():
    settings = KafkaSettings.resolve(environ={})
    assert (settings.bootstrap_servers, settings.security_protocol) == (
        "127.0.0.1:9092",
        "PLAINTEXT",
    )
    assert settings.client_id == "stream-engine"
    assert settings.sasl_password is None


def test_stream_engine_variables_override_the_config():
    settings = KafkaSettings.resolve(SASL_CONFIG, environ=ENVIRONMENT)
    assert settings.bootstrap_servers == "env-broker:9092"
    assert settings.security_protocol == "SASL_SSL"
    assert settings.sasl_mechanism == "PLAIN"
    assert settings.sasl_username == "env-user"
    assert settings.sasl_password == "env-" + PASSWORD
    assert settings.ssl_cafile == "/etc/ssl/env-ca.pem"
    assert settings.client_id == "onboarding-workers"


def test_the_broker_argument_overrides_the_environment_and_the_config():
    settings = KafkaSettings.resolve(SASL_CONFIG, broker="cli-broker:9092", environ=ENVIRONMENT)
    assert settings.bootstrap_servers == "cli-broker:9092"
    assert settings.sasl_username == "env-user"


def test_the_broker_argument_overrides_the_config_without_any_variables():
    settings = KafkaSettings.resolve(SASL_CONFIG, broker="cli-broker:9092", environ={})
    assert settings.bootstrap_servers == "cli-broker:9092"
    assert settings.security_protocol == "SASL_PLAINTEXT"


def test_an_empty_variable_does_not_override_the_config():
    settings = KafkaSettings.resolve(
        SASL_CONFIG, environ={"STREAM_ENGINE_BROKER": "", "STREAM_ENGINE_SASL_USERNAME": ""}
    )
    assert settings.bootstrap_servers == "kafka-1.internal:9093,kafka-2.internal:9093"
    assert settings.sasl_username == "engine"


def test_sasl_settings_become_aiokafka_sasl_keyword_arguments():
    kwargs = KafkaSettings.resolve(SASL_CONFIG, environ={}).aiokafka()
    assert kwargs == {
        "bootstrap_servers": "kafka-1.internal:9093,kafka-2.internal:9093",
        "security_protocol": "SASL_PLAINTEXT",
        "client_id": "onboarding-workers",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "engine",
        "sasl_plain_password": PASSWORD,
    }


def test_sasl_without_a_mechanism_uses_plain():
    kwargs = KafkaSettings("b:9092", "SASL_PLAINTEXT", sasl_username="u").aiokafka()
    assert kwargs["sasl_mechanism"] == "PLAIN"


def test_plaintext_gets_neither_sasl_nor_tls_arguments():
    kwargs = KafkaSettings("b:9092").aiokafka()
    assert kwargs == {
        "bootstrap_servers": "b:9092",
        "security_protocol": "PLAINTEXT",
        "client_id": "stream-engine",
    }


@pytest.mark.parametrize(("protocol", "sasl"), [("SSL", False), ("SASL_SSL", True)])
def test_tls_protocols_get_a_tls_context(protocol, sasl):
    kwargs = KafkaSettings("b:9093", protocol, sasl_username="u", sasl_password="p").aiokafka()
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert kwargs["ssl_context"].verify_mode is ssl.CERT_REQUIRED
    assert ("sasl_mechanism" in kwargs) is sasl


def test_describe_names_the_cluster_protocol_mechanism_and_user():
    settings = KafkaSettings.resolve(SASL_CONFIG, environ={})
    assert settings.describe() == (
        "kafka-1.internal:9093,kafka-2.internal:9093 (SASL_PLAINTEXT, SCRAM-SHA-512 as engine)"
    )
    assert KafkaSettings("b:9092").describe() == "b:9092 (PLAINTEXT)"


@pytest.mark.parametrize("source", ["config", "environment"])
def test_describe_and_repr_never_contain_the_password(source):
    environ = ENVIRONMENT if source == "environment" else {}
    settings = KafkaSettings.resolve(SASL_CONFIG, environ=environ)
    assert PASSWORD in (settings.sasl_password or "")
    for text in (settings.describe(), repr(settings), str(settings), f"{settings!r}"):
        assert PASSWORD not in text
    assert PASSWORD not in repr(SASL_CONFIG)
