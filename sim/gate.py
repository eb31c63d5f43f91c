"""CDF's limit on concurrent writes, in the simulator (sim/writes.py): writes in flight, and a gate tests close.

With a limit set, a write that arrives while that many are in flight is refused
(CDF answers 429 at once). `hold()` keeps admitted writes in flight until
`release()`, and `wait_in_flight(n)` waits until n are, so tests synchronise on
the simulator's own state rather than on sleeps.
"""

from __future__ import annotations

import threading


class WriteGate:
    """Writes in flight (``in_flight``, its ``peak``), admitted under a limit, and held while the gate is closed."""

    def __init__(self, stopping: threading.Event) -> None:
        self.in_flight = 0
        self.peak = 0
        self._stopping = stopping
        self._changed = threading.Condition()
        self._open = threading.Event()
        self._open.set()

    @property
    def open(self) -> bool:
        return self._open.is_set()

    def admit(self, limit: int | None) -> bool:
        """Count a write in flight, unless ``limit`` are already; whether it was."""
        with self._changed:
            if limit is not None and self.in_flight >= limit:
                return False
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self._changed.notify_all()
        return True

    def leave(self) -> None:
        """An admitted write has been answered."""
        with self._changed:
            self.in_flight -= 1
            self._changed.notify_all()

    def reset(self) -> None:
        """Let held writes go; the peak starts again from what is in flight."""
        self._open.set()
        with self._changed:
            self.peak = self.in_flight

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def wait_in_flight(self, count: int, timeout_s: float) -> bool:
        """Wait until at least ``count`` writes are in flight; whether they were before ``timeout_s``."""
        with self._changed:
            return self._changed.wait_for(lambda: self.in_flight >= count, timeout_s)

    def wait_held(self, latency_s: float) -> None:
        """Hold an admitted write: its latency, then the gate of ``hold()``; a stopping server ends both."""
        if latency_s and self._stopping.wait(latency_s):
            return
        while not self._open.wait(0.05) and not self._stopping.is_set():
            pass
