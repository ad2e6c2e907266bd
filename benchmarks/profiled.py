"""Run a module as ``python -m`` would, under cProfile timed by this process's CPU time (not
the wall clock: on a shared machine a profile in wall time charges the process for the time
others ran), and write the profile when it exits.

    python -m benchmarks.profiled OUT.prof -m MODULE [ARGS...]
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main(argv: list[str]) -> None:
    """``OUT.prof -m MODULE ARGS...``: run MODULE with ARGS under the profiler."""
    if len(argv) < 3 or argv[1] != "-m":
        raise SystemExit("usage: python -m benchmarks.profiled OUT.prof -m MODULE [ARGS...]")
    out, module, args = argv[0], argv[2], argv[3:]
    sys.argv = [module, *args]
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main(sys.argv[1:])
