"""matchrelay's entry points; the work itself is in ``handlers/``.

- ``on_run_message``: the CloudEvent function Eventarc (or a Pub/Sub push) calls.
- ``on_run_completed``: the link, a subscriber of the events topic's ``run.completed``.
- ``on_review_decision``: people's decisions, taken into the pipeline's lists and CDF's links.
- ``python main.py run ...``: the same flow once, from a terminal.

Settings are read at import, so a wrong deployment fails at start with one clear
line; clients are built on the first event, after gunicorn has forked (gRPC
must not be set up before a fork).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import flask
import functions_framework
from cloudevents.http import CloudEvent
from werkzeug.exceptions import ServiceUnavailable

from handlers.core.errors import ConfigError
from handlers.flow.invocation import Delivery
from handlers.flow.runtime import Runtime
from handlers.process.heap import keep_for_good
from handlers.process.logs import Trace, request_trace, setup_logging
from handlers.process.settings import Settings, load_settings
from handlers.process.shutdown import install as install_sigterm
from handlers.process.tracing import configure as configure_tracing

_runtime: Runtime | None = None


class Ended(Protocol):
    """How any flow's invocation ended, as the entry point answers it."""

    @property
    def ack(self) -> bool: ...

    reason: str | None


_lock = threading.Lock()


def _startup() -> Settings:
    setup_logging()
    try:
        settings = load_settings()
    except ConfigError as exc:
        logging.getLogger("matchrelay").critical("configuration error: %s", exc)
        raise SystemExit(2) from None
    setup_logging(settings.log_level)
    configure_tracing(settings.otel_traces_exporter, settings.otel_service_name)
    install_sigterm()
    keep_for_good("import")
    return settings


def runtime() -> Runtime:
    """The process's one ``Runtime``, built on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime.build(_settings)
            keep_for_good("runtime")  # Pub/Sub's client and gRPC are imported by now
        return _runtime


@functions_framework.cloud_event
def on_run_message(event: CloudEvent) -> None:
    """Relay the run a trigger message names; 200 acks it, 503 hands it back to Pub/Sub."""
    _deliver(event, runtime().handle_event)


@functions_framework.cloud_event
def on_run_completed(event: CloudEvent) -> None:
    """Link the run a run.completed event names (contract, section 8); 200 acks it, 503 hands it back."""
    _deliver(event, runtime().handle_completed)


@functions_framework.cloud_event
def on_review_decision(event: CloudEvent) -> None:
    """Apply people's decisions on one pipeline's matches (contract, section 10); 200 acks, 503 hands back."""
    _deliver(event, runtime().handle_decision)


def _deliver(event: CloudEvent, handle: Callable[[str, Any, Delivery], Ended]) -> None:
    """The one adapter of every entry point: the event to its flow, the outcome to an HTTP answer."""
    received = time.monotonic()  # the invocation's deadline counts from here
    outcome = handle(str(event["id"]), event.get_data(), Delivery(received, str(event["source"]), _request_trace()))
    if not outcome.ack:
        raise ServiceUnavailable(f"handed back for redelivery: {outcome.reason}")


def _request_trace() -> Trace | None:
    """This request's ``traceparent`` or ``X-Cloud-Trace-Context``, if valid."""
    if not flask.has_request_context():
        return None
    headers = flask.request.headers
    return request_trace(headers.get("traceparent"), headers.get("X-Cloud-Trace-Context"))


if __name__ == "__main__":
    from handlers.cli.commands import main

    keep_for_good("import")
    sys.exit(main(sys.argv[1:]))
else:
    _settings = _startup()
