"""A bound on synchronous rule work: code that holds the worker's thread past its limit is
interrupted there, so one record cannot stall a stage (nor its heartbeats, nor /health).

The engine runs sync rules inline on the event loop. A rule caught in a loop - its own, or a
library's on a crafted input - would otherwise hold the loop until it returns. A watchdog thread
notices an armed region past its deadline and raises ``Overrun`` in the worker's thread (the
interpreter's asynchronous exception, delivered between bytecodes; code inside one C call is
interrupted when that call returns). ``Overrun`` derives from ``BaseException``, so a rule's
own ``except Exception`` cannot swallow it; it is raised again every ``REFIRE_S`` until the
region ends.

Arming costs a clock read and a store; disarming, a lock round trip and one Python call, which
delivers an interruption that raced with the end of the region inside the caller's ``try``."""

from __future__ import annotations

import ctypes
import threading
import time

POLL_S = 0.02
REFIRE_S = 0.1

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
_set_async_exc.restype = ctypes.c_int


class Overrun(BaseException):
    """Raised into a thread whose armed region ran past its deadline."""


def _checkpoint() -> None:
    """A Python-level call: a pending interruption is raised here, not later."""


class Watchdog:
    """Watches one thread (the one that arms it first)."""

    __slots__ = ("_deadline", "_lock", "_target", "_thread", "fired")

    def __init__(self) -> None:
        self._deadline = 0.0
        self._lock = threading.Lock()
        self._target = 0
        self._thread: threading.Thread | None = None
        #: How many times it interrupted (for tests and logs).
        self.fired = 0

    def arm(self, limit_s: float) -> None:
        """Start a region of this thread that may run for ``limit_s`` seconds. The region
        must not await: another task would run in it."""
        if self._thread is None:
            self._start()
        self._target = threading.get_ident()
        self._deadline = time.perf_counter() + limit_s

    def disarm(self) -> None:
        """End the region; raises ``Overrun`` if the watchdog fired just before."""
        with self._lock:
            self._deadline = 0.0
        _checkpoint()

    def settle(self) -> None:
        """End the region after an ``Overrun``, swallowing one that races with the end."""
        while True:
            try:
                self.disarm()
            except Overrun:
                continue
            return

    def _start(self) -> None:
        thread = threading.Thread(target=self._watch, name="stream-engine-watchdog", daemon=True)
        self._thread = thread
        thread.start()

    def _watch(self) -> None:
        while True:
            time.sleep(POLL_S)
            deadline = self._deadline
            if not deadline or time.perf_counter() < deadline:
                continue
            with self._lock:
                if self._deadline != deadline:
                    continue  # the region ended (or a new one began) meanwhile
                self._deadline = time.perf_counter() + REFIRE_S
                self.fired += 1
                _set_async_exc(self._target, Overrun)


#: The process's watchdog; it watches the thread that runs the stages (the event loop's).
WATCHDOG = Watchdog()
