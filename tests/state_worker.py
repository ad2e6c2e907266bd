"""``python tests/state_worker.py [--gate FILE] ARGS``: the ``stream-engine`` command with the
test-only stateful rule registered (tests/state_helpers.py); with ``--gate`` it waits for FILE
to exist first, so a test can have a worker join a group at a moment of its choosing."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from state_helpers import register_count_rule

from stream_engine.cli import main

if __name__ == "__main__":
    register_count_rule()
    args = sys.argv[1:]
    if args[:1] == ["--gate"]:
        gate = Path(args[1])
        args = args[2:]
        while not gate.exists():
            time.sleep(0.02)
    sys.argv = [sys.argv[0], *args]
    main()
