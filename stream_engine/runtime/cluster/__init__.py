"""The Kafka side: connection settings, topics and their names, ACLs, the embedded broker."""
