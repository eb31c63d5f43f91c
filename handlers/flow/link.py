"""The link, stage by stage (contract, section 8): pipeline → matches → decide → links in place → writes → run.linked.

``Linker.link(request, deadline)`` is the whole link of one run; the function
(``handle_event``, with its accept step and its summary line) and the command
both call it. CDF is the progress record: every chunk of at most 1000 sources
reads its sources' links with ``byids`` and writes only what is not in place,
so a redelivery, a replay or a second command goes on from what CDF holds.

Chunks are ascending by source id and started in that order, ``READS`` at
once, of which ``LINK_CONCURRENCY`` write at once (``handlers.flow.link_writes``).
Every ending is a ``LinkOutcome``:
``linked`` or ``refused`` (``run.linked`` published, with or without a reason),
``ignored`` (not this deployment's to link), or ``handed_back`` (answer non-2xx:
the deadline came, the instance is stopping, or ``run.linked`` was not confirmed).
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from handlers.cdf.api import CdfClient
from handlers.cdf.resources import Resources
from handlers.cdf.results import RunBody
from handlers.core.deadline import Deadline
from handlers.core.errors import HandBack, PermanentError
from handlers.core.events import RunRef
from handlers.core.linked import LinkFacts, LinkRequest, Other, Rejected, accept, linked_event
from handlers.core.linking import Candidates, Counts, OutOfTime, Plan, Resource, resource_of, run_key
from handlers.core.models import RunSummary
from handlers.core.poll import Backoff, Clock, Deadlines, Poller, summary_of
from handlers.core.progress import NO_PROGRESS, Progress
from handlers.flow.link_writes import READS, ChunkWriter, outcomes
from handlers.process.logs import Trace, gcp_project, log_context, parse_traceparent, trace_fields, traceparent_of
from handlers.process.settings import Settings
from handlers.pubsub.publish import Sink

log = logging.getLogger("matchrelay")
DEADLINE_CHECK_EVERY = 1000  # matches read between looks at the clock


class RunFailed(PermanentError):
    """CDF says the run failed: there is nothing to link."""

    reason = "run_failed"


@dataclass
class LinkOutcome:
    """How one link ended; ``ack`` is what the function answers (200 or not)."""

    kind: str  # linked, refused, ignored or handed_back
    reason: str | None = None
    dry_run: bool = False
    counts: Counts = field(default_factory=Counts)
    detail: str = ""

    @property
    def ack(self) -> bool:
        return self.kind != "handed_back"

    def fields(self) -> dict[str, Any]:
        """The summary line's fields; the deployment's log-based metrics read these names."""
        return {"outcome": self.kind, "reason": self.reason, "dryRun": self.dry_run, **self.counts.data()}


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
        job = _Job(self, request, deadline or Deadline.never(self.clock.monotonic), dry_run)
        try:
            return job.run()
        except HandBack as exc:
            return LinkOutcome("handed_back", exc.code, dry_run, job.counts, str(exc))

    def handle_event(
        self, event_id: str, data: Any, received: float, trace: Trace | None = None, source: str | None = None
    ) -> LinkOutcome:
        """One message of the events topic, start to end: accept it, link its run, log one summary line."""
        message = data.get("message") if isinstance(data, dict) else None
        accepted = accept(
            event_id, data, allowed=self.settings.allowed_projects, pipelines=self.settings.link_pipeline_ids
        )
        trace = trace or _message_trace(message)
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


@dataclass
class _Job:
    """The link of one run, in one invocation."""

    linker: Linker
    request: LinkRequest
    deadline: Deadline
    dry_run: bool
    counts: Counts = field(default_factory=Counts)
    facts: LinkFacts = field(init=False)
    summary: RunSummary | None = None

    def __post_init__(self) -> None:
        self.facts = LinkFacts(self.dry_run, self.linker.settings.link_min_score)

    def run(self) -> LinkOutcome:
        try:
            resource = self._pipeline()
            if resource is None:
                what = f"{self.facts.source_resource} to {self.facts.target_resource}"
                return self._report("unsupported_resource", f"the pipeline links {what}: nothing to link")
            plan = self._plan()
            self.counts.merge(plan.counts)
            self.linker.progress.decided(outcomes(plan.counts))
            self._apply(plan, resource)
        except PermanentError as exc:
            return self._report(exc.reason, str(exc))
        return self._report(None, "")

    def _pipeline(self) -> Resource | None:
        """The source resource, from the pipeline CDF holds; None when links are not made for it."""
        r = self.request
        pipeline = self.linker.resources.pipeline(r.project, r.pipeline_id, self.deadline)
        sources, targets = pipeline.get("sources"), pipeline.get("targets")
        source = sources.get("resource") if isinstance(sources, dict) else None
        target = targets.get("resource") if isinstance(targets, dict) else None
        text = (source if isinstance(source, str) else None, target if isinstance(target, str) else None)
        self.facts = dataclasses.replace(self.facts, source_resource=text[0], target_resource=text[1])
        return resource_of(source, target)

    def _plan(self) -> Plan:
        """The run's matches read again from CDF (polled as section 4 says) and decided, source by source."""
        settings, clock, poller = self.linker.settings, self.linker.clock, self._poller()
        poller.progress = self.linker.progress  # a run still going shows its status, as `run` shows it
        now, wall = clock.monotonic(), self.linker.wall()
        born = self.request.publish_time.timestamp() if self.request.publish_time else wall
        budget = None
        if self.deadline.bounded:  # the command polls without a budget, as `run` does
            budget = min(now + settings.budget_s, self.deadline.end - self.deadline.margin)
        deadlines = Deadlines(budget, now + born + settings.run_max_wait_s - wall)
        return poller.until_done(lambda: self._read_run(poller), deadlines)

    def _read_run(self, poller: Poller) -> Plan | None:
        r = self.request
        with self.linker.cdf.open_run(r.project, r.pipeline_id, r.run_id, self.deadline) as chunks:
            body = RunBody(chunks)
            self.summary = poller.stats.last = summary_of(body.header())  # the status a wait reports
            self.facts = dataclasses.replace(self.facts, job_id=self.summary.jobId)
            if not self.summary.finished:
                log.info("run is %s; polling again later", self.summary.status)
                return None
            if self.summary.status == "Failed":
                raise RunFailed(self.summary.errorMessage or "CDF says the run failed")
            candidates, progress, read, reported = Candidates(), self.linker.progress, 0, 0
            for array, index, item in body.items():
                if array == "matches":
                    candidates.add(item, index)
                    read = index + 1
                    if index % DEADLINE_CHECK_EVERY == 0:
                        progress.linking(matches=read - reported)
                        reported = read
                        if not self.deadline.producing():
                            raise OutOfTime(f"the deadline came while reading the run's matches ({index} read)")
            progress.linking(matches=read - reported)
        return candidates.plan(self.linker.settings.link_min_score)

    def _apply(self, plan: Plan, resource: Resource) -> None:
        """Every chunk of links, started in source order (``READS`` reading at once, ``LINK_CONCURRENCY`` writing);
        a refusal stops those not started."""
        settings, r = self.linker.settings, self.request
        write = ChunkWriter(
            self.linker.resources,
            self._poller,
            r.project,
            run_key(r.project, r.pipeline_id, r.run_id),
            resource,
            self.deadline,
            settings.link_overwrite,
            self.dry_run,
            threading.Event(),
            threading.Semaphore(settings.link_concurrency),
            self.linker.progress,
        )
        workers = max(READS, settings.link_concurrency)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="link") as pool:
            futures = [pool.submit(contextvars.copy_context().run, write, links) for links in plan.chunks()]
            results = [future.result() for future in futures]
        for counts, _ in results:
            self.counts.merge(counts)
        errors = [error for _, error in results if error is not None]
        # A refusal is final (a redelivery would meet it again): report it. Else the time ran out: hand back.
        first = next((e for e in errors if isinstance(e, PermanentError)), None) or next(iter(errors), None)
        if first is not None:
            raise first

    def _poller(self) -> Poller:
        settings = self.linker.settings
        return Poller(Backoff(settings.poll_initial_delay_s, settings.poll_max_delay_s), self.linker.clock)

    def _report(self, reason: str | None, detail: str) -> LinkOutcome:
        """Publish ``run.linked`` with the counts reached; raises ``PublishFailed`` when it is not confirmed."""
        r, linker = self.request, self.linker
        ref = RunRef(linker.settings.base_url, r.project, r.pipeline_id, r.run_id, traceparent=r.traceparent)
        facts = dataclasses.replace(self.facts, reason=reason)
        event = linked_event(ref, facts, self.counts, self._time_ms())
        linker.sink.publish(linker.topic, [event], self.deadline)
        return LinkOutcome("linked" if reason is None else "refused", reason, self.dry_run, self.counts, detail)

    def _time_ms(self) -> int:
        """``ce-time``: the run's statusTime as CDF gave it, else as run.completed carried it, else now."""
        if self.summary is not None and self.summary.statusTime is not None:
            return self.summary.statusTime
        return self.request.status_time if self.request.status_time is not None else self.linker.now_ms()


def _message_trace(message: Any) -> Trace | None:
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
