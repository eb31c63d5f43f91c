"""The link (contract, section 8), as the function and the command meet it: one message, one run, one summary line.

``Linker.link(request, deadline)`` is the whole link of one run
(``handlers.flow.link``); the function (``handle``, with its accept step and
its summary line) and the command both call it. ``handle`` acks
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
from handlers.core.events import epoch_ms
from handlers.core.link_events import LinkRequest, Other, Rejected, accept_envelope
from handlers.core.poll import Clock
from handlers.core.progress import NO_PROGRESS, Progress
from handlers.core.review import Decisions
from handlers.flow import review
from handlers.flow.invocation import Arrival, summarize
from handlers.flow.link import LinkJob
from handlers.flow.link import LinkOutcome as LinkOutcome  # the command and the runtime take it from here
from handlers.flow.review import ReviewJob, ReviewOutcome
from handlers.flow.unlink import UnlinkJob, UnlinkOutcome, UnlinkRequest
from handlers.process.logs import log_context, traceparent_of
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
    review_topic: str = "-"  # REVIEW_TOPIC, where review.applied goes (anything under --stdout)

    def link(self, request: LinkRequest, deadline: Deadline | None = None) -> LinkOutcome:
        """Link one run; ``deadline`` None (the command) links to the end, however long it takes."""
        dry_run = self.settings.link_dry_run if request.dry_run is None else request.dry_run
        return LinkJob(self, request, deadline or Deadline.never(self.clock.monotonic), dry_run).run()

    def unlink(self, request: UnlinkRequest, deadline: Deadline | None = None) -> UnlinkOutcome:
        """Put back one run's links (contract, section 9); ``deadline`` None (the command): to the end."""
        return UnlinkJob(self, request, deadline or Deadline.never(self.clock.monotonic)).run()

    def review(self, decisions: Decisions, deadline: Deadline | None = None, dry_run: bool = False) -> ReviewOutcome:
        """Apply one message's decisions (contract, section 10); ``deadline`` None (the command): to the end."""
        job = ReviewJob(self, decisions, deadline or Deadline.never(self.clock.monotonic), self.review_topic, dry_run)
        return job.run()

    def decide(self, arrival: Arrival) -> ReviewOutcome:
        """One message of the decisions topic, start to end, with its summary line."""
        return review.handle(self, arrival, self.review_topic)

    def handle(self, arrival: Arrival) -> LinkOutcome:
        """One message of the events topic, start to end: accept it, link its run, log one summary line."""
        settings = self.settings
        accepted = accept_envelope(
            arrival.envelope, allowed=settings.allowed_projects, pipelines=settings.link_pipeline_ids
        )
        with log_context(messageId=accepted.message_id, **arrival.log_fields(settings.google_cloud_project)):
            if isinstance(accepted, Other):
                return self._summarized(_ignored(accepted, settings.link_dry_run), arrival)
            with log_context(project=accepted.project, pipelineId=accepted.pipeline_id, runId=accepted.run_id):
                if isinstance(accepted, Rejected):
                    return self._summarized(_ignored(accepted, settings.link_dry_run), arrival)
                trace = arrival.trace
                request = dataclasses.replace(accepted, traceparent=traceparent_of(trace) if trace else None)
                return self._summarized(self.link(request, arrival.deadline), arrival)

    def _summarized(self, outcome: LinkOutcome, arrival: Arrival) -> LinkOutcome:
        summarize(*_summary(outcome), arrival.received, self.clock.monotonic)
        return outcome

    def now_ms(self) -> int:
        """The time of a decision, epoch milliseconds (ce-time of an event with no run)."""
        return epoch_ms(self.wall)


def _ignored(accepted: Other | Rejected, dry_run: bool) -> LinkOutcome:
    """Acked without linking: a run.completed this deployment must not link, or another type."""
    if isinstance(accepted, Rejected):
        return LinkOutcome("ignored", accepted.reason, dry_run, detail=accepted.detail)
    return LinkOutcome("ignored", "other_type", dry_run, detail=f"not a run.completed ({accepted.ce_type})")


def _summary(outcome: LinkOutcome) -> tuple[int, str, dict[str, Any]]:
    """How the link's line says how it ended, with every count, under the names the log-based metrics read. A
    run.completed this deployment must not link is a WARNING; another type a DEBUG line (on a subscription without
    a filter, they are most of the topic's traffic)."""
    n = outcome.counts
    if outcome.kind == "ignored" and outcome.reason == "other_type":
        level, message = logging.DEBUG, f"{outcome.detail}: acked untouched"
    elif outcome.kind == "ignored":
        level, message = logging.WARNING, f"run.completed acked without linking: {outcome.detail}"
    elif outcome.kind == "linked" and outcome.dry_run:
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
    return level, message, outcome.fields()
