"""A write's turn under CDF's limit on concurrent writes: taken before the request is sent, given back when CDF has
answered.

CDF counts a request in flight until it answers. Its answer to an ``update`` echoes
every item written (some hundreds of kilobytes for 1,000 items); reading that
body is the client's time, not CDF's, so the turn of a write CDF took is given
back at the status line and the body is read after. Holding the turn while the
body came in kept a quarter of each write's turn away from CDF. A refusal keeps
its turn until the refusal is known to every writer, so that no write starts in
between.
"""

from __future__ import annotations

import threading


class Turn:
    """One writer's place among ``LINK_CONCURRENCY``; ``give`` may be called any number of times, it gives once."""

    def __init__(self, slots: threading.Semaphore, timeout_s: float | None) -> None:
        self._slots, self._timeout_s = slots, timeout_s
        self.held = False

    def take(self) -> bool:
        """Wait for a place (at most the timeout given); False if none came in time."""
        if not self.held:
            self.held = self._slots.acquire(timeout=self._timeout_s)
        return self.held

    def give(self) -> None:
        if self.held:
            self.held = False
            self._slots.release()
