"""``python -m stream_engine.cli``: the ``stream-engine`` command."""

from stream_engine.cli import main

main()
