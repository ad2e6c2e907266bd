"""What a worker shows: Prometheus metrics, the /metrics /health /ready endpoint, GC tuning."""
