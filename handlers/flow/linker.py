"""The link (contract, section 8), as the function and the command meet it: one message, one run, one summary line.

``Linker.link(request, deadline)`` is the whole link of one run
(``handlers.flow.link``); the function (``handle_event``, with its accept
step and its summary line) and the command both call it. ``handle_event`` acks
what this deployment must not link (a WARNING line for a ``run.completed`` of
another project or pipeline, DEBUG for another type) without touching CDF.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handlers.cdf.api import CdfClient
from handlers.cdf.resources import Resources
from handlers.core.deadline import Deadline
from handlers.core.errors import OutOfTime
from handlers.core.link_events import LinkRequest, Other, Rejected, accept
from handlers.core.poll import Clock
from handlers.core.progress import NO_PROGRESS, Progress
from handlers.flow.link import LinkJob
from handlers.flow.link import LinkOutcome as LinkOutcome  # the command and the runtime take it from here
from handlers.process.logs import Trace, gcp_project, log_context, parse_traceparent, trace_fields, traceparent_of
from handlers.process.settings import Settings
from handlers.pubsub.publish import Sink

log = logging.getLogger("matchrelay")


@dataclass
class Linker:
    settings: Settings
    cdf: CdfClient
    resources: Resources
    sink: Sink
    clock: Clock
    topic: str  # LINK_TOPIC (anything under --stdout)
    wall: Callable[[], float] = time.time
    progress: Progress = NO_PROGRESS  # the command's display on a terminal; a no-op otherwise

    def link(self, request: LinkRequest, deadline: Deadline | None = None) -> LinkOutcome:
        """Link one run; ``deadline`` None (the command) links to the end, however long it takes."""
        dry_run = self.settings.link_dry_run if request.dry_run is None else request.dry_run
        return LinkJob(self, request, deadline or Deadline.never(self.clock.monotonic), dry_run).run()

    def handle_event(
        self, event_id: str, data: Any, received: float, trace: Trace | None = None, source: str | None = None
    ) -> LinkOutcome:
        """One message of the events topic, start to end: accept it, link its run, log one summary line."""
        message = data.get("message") if isinstance(data, dict) else None
        accepted = accept(
            event_id, data, allowed=self.settings.allowed_projects, pipelines=self.settings.link_pipeline_ids
        )
        trace = trace or message_trace(message)
        subscription = data.get("subscription") if isinstance(data, dict) else None
        where = gcp_project(self.settings.google_cloud_project, source, subscription)
        with log_context(messageId=accepted.message_id, **trace_fields(trace, where)):
            if isinstance(accepted, Other):
                return self._ignored(accepted, received)
            with log_context(project=accepted.project, pipelineId=accepted.pipeline_id, runId=accepted.run_id):
                if isinstance(accepted, Rejected):
                    return self._ignored(accepted, received)
                request = dataclasses.replace(accepted, traceparent=traceparent_of(trace) if trace else None)
                outcome = self.link(request, Deadline.after(self.settings.timeout_s, received, self.clock.monotonic))
                _summarize(outcome, received, self.clock.monotonic)
                return outcome

    def _ignored(self, accepted: Other | Rejected, received: float) -> LinkOutcome:
        """Ack without linking, on one summary line: a run.completed this deployment must not link is a WARNING;
        another type a DEBUG line (on a subscription without a filter, they are most of the topic's traffic)."""
        if isinstance(accepted, Rejected):
            level, reason, detail = logging.WARNING, accepted.reason, accepted.detail
            message = f"run.completed acked without linking: {detail}"
        else:
            level, reason, detail = logging.DEBUG, "other_type", f"not a run.completed ({accepted.ce_type})"
            message = f"{detail}: acked untouched"
        outcome = LinkOutcome("ignored", reason, self.settings.link_dry_run, detail=detail)
        log.log(level, message, extra=_extra(outcome, received, self.clock.monotonic))
        return outcome

    def now_ms(self) -> int:
        return int(self.wall() * 1000)


def message_trace(message: Any) -> Trace | None:
    """The trace the run.completed carried (``ce-traceparent``), or a ``traceparent`` attribute."""
    attributes = message.get("attributes") if isinstance(message, dict) else None
    for name in ("ce-traceparent", "traceparent"):
        value = attributes.get(name) if isinstance(attributes, dict) else None
        trace = parse_traceparent(value) if isinstance(value, str) else None
        if trace is not None:
            return trace
    return None


def _extra(outcome: LinkOutcome, started: float, now: Callable[[], float]) -> Any:
    return {"fields": {**outcome.fields(), "seconds": round(now() - started, 3)}}


def _summarize(outcome: LinkOutcome, started: float, now: Callable[[], float]) -> None:
    """One line per linked run: how it ended and every count, under the names the log-based metrics read."""
    n = outcome.counts
    if outcome.kind == "linked" and outcome.dry_run:
        level, message = logging.INFO, f"dry run: {n.linked} sources would be linked, nothing written"
    elif outcome.kind == "linked":
        level, message = logging.INFO, f"{n.linked} sources linked ({n.written} written now)"
    elif outcome.kind == "refused":
        level, message = logging.WARNING, f"published run.linked ({outcome.reason}): {outcome.detail}"
    else:
        # Time running out is routine while writes go on; a redelivery that wrote nothing, or a lost run.linked, is not.
        stalled = outcome.reason == OutOfTime.code and n.written == 0
        level = logging.ERROR if outcome.reason == "publish_failed" else logging.WARNING if stalled else logging.INFO
        message = f"handed the message back for redelivery ({n.written} written): {outcome.detail}"
    log.log(level, message, extra=_extra(outcome, started, now))
