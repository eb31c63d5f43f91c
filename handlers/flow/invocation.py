"""What every invocation shares: its message read once where it arrives, how an error ends it, its summary line.

- ``Arrival``: the envelope (``handlers.core.envelope``), when it came, from
  which topic, its trace and the invocation's deadline. Built once by the
  runtime; every flow is handed it.
- ``ended``: the one place an error becomes an outcome. A ``PermanentError`` is
  answered as the flow answers it (an error event, a ``run.linked`` with a
  reason), and a ``HandBack`` (also one raised while answering) hands the
  message back.
- ``summarize``: each flow's one summary line, written the same way: its
  message, its fields and the seconds since arrival, on the log and the span.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from handlers.core.deadline import Deadline
from handlers.core.envelope import Envelope
from handlers.core.errors import HandBack, PermanentError
from handlers.core.tally import Tally
from handlers.process.logs import Trace, gcp_project, parse_traceparent, trace_fields
from handlers.process.tracing import annotate

log = logging.getLogger("matchrelay")
Ending = TypeVar("Ending")
RELAY_TRACE = ("traceparent",)  # a trigger's own attribute (the worker's continuations and sweeps carry one)
LINK_TRACE = ("ce-traceparent", "traceparent")  # the trace the run.completed carried, else the plain attribute


@dataclass(frozen=True)
class Delivery:
    """How a message arrived: when (the clock's monotonic time), from which topic (Eventarc's ``source``), with
    which trace (the request's headers)."""

    received: float
    source: str | None = None
    trace: Trace | None = None


@dataclass(frozen=True)
class Arrival:
    """One message where it arrives, read once: what every flow is handed."""

    envelope: Envelope
    received: float
    deadline: Deadline
    source: str | None = None
    trace: Trace | None = None

    @classmethod
    def of(cls, envelope: Envelope, delivery: Delivery, deadline: Deadline, names: tuple[str, ...]) -> Arrival:
        """The request's trace, else the first valid one of the message's attributes ``names``."""
        trace = delivery.trace or next(
            (t for t in (parse_traceparent(envelope.attribute(n) or "") for n in names) if t is not None), None
        )
        return cls(envelope, delivery.received, deadline, delivery.source, trace)

    def log_fields(self, google_cloud_project: str | None) -> dict[str, Any]:
        """Cloud Logging's trace fields, the trace named by ``GOOGLE_CLOUD_PROJECT``, else by the project of the
        message's topic or subscription (Cloud Run does not set that variable by itself)."""
        where = gcp_project(google_cloud_project, self.source, self.envelope.subscription)
        return trace_fields(self.trace, where)


@dataclass
class Counted:
    """How a flow that reports counts ended (the link, the undo); ``ack`` is what a function answers (200 or not)."""

    kind: str
    reason: str | None = None
    dry_run: bool = False
    counts: Tally = field(default_factory=Tally)
    detail: str = ""

    @property
    def ack(self) -> bool:
        return self.kind != "handed_back"

    def fields(self) -> dict[str, Any]:
        """The summary line's fields; the deployment's log-based metrics read these names."""
        return {"outcome": self.kind, "reason": self.reason, "dryRun": self.dry_run, **self.counts.data()}


def ended(
    work: Callable[[], Ending],
    handed_back: Callable[[HandBack], Ending],
    answer: Callable[[PermanentError], Ending] | None = None,
) -> Ending:
    """``work``'s outcome; a refusal answered by ``answer``; a hand-back, also one raised by ``answer`` (its error
    event could not be published), by ``handed_back``. Anything else is a bug, and propagates."""
    try:
        try:
            return work()
        except PermanentError as exc:
            if answer is None:
                raise
            return answer(exc)
    except HandBack as exc:
        return handed_back(exc)


def summarize(level: int, message: str, fields: dict[str, Any], started: float, now: Callable[[], float]) -> None:
    """One line per invocation: ``fields`` (the names the log-based metrics read) and the seconds it took; the same
    fields on its span, with the message as the span's error when the line is one."""
    fields = {**fields, "seconds": round(now() - started, 3)}
    log.log(level, message, extra={"fields": fields})
    annotate(fields, error=message if level >= logging.ERROR else None)
