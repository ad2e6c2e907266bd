"""Kafka-backed state of stateful rules: their changelog topics, and restoring a partition's
stores from them when it is assigned."""
