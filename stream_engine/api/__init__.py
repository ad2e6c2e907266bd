"""The HTTP API: decisions while the caller waits (``POST /v1/decide``), publish-only intake
(``POST /v1/records``) and lookup (``GET /v1/decisions/{id}``), over the same Kafka pipeline
the stage workers run. ``server.py`` runs it; ``app.py`` holds the routes."""
