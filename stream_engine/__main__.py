"""``python -m stream_engine`` runs the ``stream-engine`` command."""

from stream_engine.cli import main

main()
