"""Everything Kafka: topics, the stage agents, the envelope codec, the brokers."""
