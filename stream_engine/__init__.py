"""stream_engine: a Kafka-native, configuration-driven, multi-stage rule engine."""

__version__ = "0.1.0"
