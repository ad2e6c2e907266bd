"""The rule engine itself: pure Python, no Kafka, faust, HTTP or metrics imports."""
