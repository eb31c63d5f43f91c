"""SIGTERM: stop waiting at once and hand the message back.

Cloud Run sends SIGTERM to the container before it stops an instance. An
invocation asleep between polls would otherwise keep sleeping until it is
killed; instead the poller's sleep wakes on ``STOP`` and answers non-2xx, so
Pub/Sub redelivers the message to another instance. Events already confirmed
stay published and are published again with the same ids, so nothing is lost.

Under gunicorn (functions-framework in production) the app is imported in the
master and every worker resets its signal handlers after the fork, so the
handler is also chained in each worker once gunicorn has installed its own.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from types import FrameType
from typing import Any

STOP = threading.Event()
_installed = False


def install(*, exit_by_default: bool = True) -> None:
    """Chain a SIGTERM handler here (main thread only) and in every gunicorn worker; once per process.

    ``exit_by_default`` False (the ``run`` command): only wake the poller, so the command ends with its own code.
    """
    global _installed
    if _installed:
        return
    _installed = True
    if threading.current_thread() is threading.main_thread():
        _chain(exit_by_default)
    with contextlib.suppress(ImportError):
        from gunicorn.workers.base import Worker

        original = Worker.init_signals

        def init_signals(self: Any) -> None:
            original(self)
            _chain(True)

        Worker.init_signals = init_signals


def _chain(exit_by_default: bool) -> None:
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        STOP.set()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL and exit_by_default:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
