"""The objects a process keeps for good are set aside from the cyclic collector's walks.

A full collection walks every object the collector tracks, and a link of a million
matches made some thirty of them: each walked the modules, functions and classes
imported at start (some 56,000 objects, 90,000 with Pub/Sub's client) and took
50 ms on a shared vCPU, holding the GIL while four writes waited for their turns.
``gc.freeze`` moves what is alive now into a generation the collector leaves alone;
what is made later is collected as before. Each stage freezes once per process, so a
test process that loads the app many times does not keep its tests' objects.
"""

from __future__ import annotations

import gc
import threading

_done: set[str] = set()
_lock = threading.Lock()


def keep_for_good(stage: str) -> bool:
    """Collect, then freeze what is left (once per ``stage``: "import", "runtime"); whether this call froze."""
    with _lock:
        if stage in _done:
            return False
        _done.add(stage)
    gc.collect()  # garbage is freed first: only what is alive is set aside
    gc.freeze()
    return True
