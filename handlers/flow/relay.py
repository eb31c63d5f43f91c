"""The flow, stage by stage: trigger → poll → normalize → publish → complete or continue.

``Relay`` owns no I/O of its own: CDF, the sink and time are handed in. It turns
every ending into an ``Outcome``: a completed run (its events confirmed), a
segment published and its continuation confirmed (the invocation's deadline
came first), a ``run.failed`` event published (any ``PermanentError``), or a
hand-back (``HandBack``) that the entry point answers with a non-2xx status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from handlers.cdf.api import CdfClient
from handlers.cdf.results import RunBody
from handlers.core.continuation import Segment, continuation_message
from handlers.core.deadline import Deadline
from handlers.core.errors import HandBack, InvalidTrigger, MalformedResponse, NothingPublished, PermanentError
from handlers.core.events import Event, RunRef, epoch_ms
from handlers.core.models import RunSummary, is_integer
from handlers.core.normalize import completed_event, failed_event, stream_events
from handlers.core.poll import Clock, Deadlines, Poller, still_running, summary_of, waits
from handlers.core.progress import NO_PROGRESS, Progress
from handlers.core.trigger import Trigger
from handlers.flow.invocation import ended
from handlers.process.settings import Settings
from handlers.pubsub.publish import Sink

log = logging.getLogger("matchrelay")


@dataclass(frozen=True)
class Topics:
    """Where events go: ``RELAY_TOPIC`` and ``RELAY_ERROR_TOPIC`` (anything under ``--stdout``)."""

    events: str
    errors: str


OutcomeKind = Literal["completed", "continued", "failed", "handed_back", "swept"]
"""How an invocation ended: the summary line's ``outcome``. ``swept`` is a sweep's alone."""


@dataclass
class Outcome:
    """How one trigger ended; ``ack`` is what the function answers (200 or not)."""

    kind: OutcomeKind
    reason: str | None = None
    events: int = 0
    polls: int = 0
    retries: int = 0
    run_id: int | None = None
    detail: str = ""
    segment: int = 0
    completed_lag_s: float | None = None  # run.completed confirmed: seconds since the run's statusTime

    @property
    def ack(self) -> bool:
        return self.kind != "handed_back"


@dataclass
class Relay:
    settings: Settings
    cdf: CdfClient
    sink: Sink
    clock: Clock
    wall: Callable[[], float] = time.time  # epoch seconds, for publishTime ages and ce-time of decisions
    topics: Topics = field(default_factory=lambda: Topics("-", "-"))
    progress: Progress = NO_PROGRESS  # the CLI's display (handlers.cli.display.attach); a no-op otherwise

    def invalid(self, exc: InvalidTrigger, traceparent: str | None = None, deadline: Deadline | None = None) -> Outcome:
        """Answer an invalid trigger with one ``run.failed`` event; CDF is never asked."""
        ref = RunRef(
            self.settings.base_url,
            exc.project or self.settings.cdf_project,
            exc.pipeline_id,
            exc.run_id,
            known_project=exc.project is not None,
            from_trigger=True,
            traceparent=traceparent,
        )
        event = failed_event(ref, exc.reason, str(exc), None, self.now_ms(), f"invalid-trigger/{exc.message_id}")
        log.warning("invalid trigger answered with run.failed: %s", exc)
        return ended(lambda: self._failed(event, exc, deadline), _handed_back)

    def relay(
        self,
        trigger: Trigger,
        budget_s: float | None,
        started_wall: float | None = None,
        deadline: Deadline | None = None,
        continue_to: str | None = None,
    ) -> Outcome:
        """Wait for the run and publish its events; ``budget_s`` None polls without a budget.

        ``deadline`` is when the invocation must have answered, ``continue_to`` the topic a continuation goes to.
        """
        deadline = deadline or Deadline.never(self.clock.monotonic)
        nowhere = deadline.bounded and continue_to is None
        if nowhere:  # no topic to continue on: the run is published to the end, whatever the deadline
            deadline = Deadline.never(self.clock.monotonic)
        deadlines = self._deadlines(trigger, budget_s, started_wall)
        attempt = _Attempt(self, trigger, self.poller(), deadline, deadlines, continue_to, nowhere)
        outcome = ended(attempt.work, _handed_back, attempt.answer)
        stats = attempt.poller.stats
        outcome.polls, outcome.retries, outcome.run_id = stats.polls, stats.retries, attempt.run_id
        outcome.segment = trigger.continuation.segment
        return outcome

    def poller(self) -> Poller:
        """A fresh poller for one invocation: the configured backoff, this relay's clock and progress."""
        return Poller(self.settings.backoff, self.clock, progress=self.progress)

    def _ref(self, trigger: Trigger, run_id: int | None, latest_key: str | None = None) -> RunRef:
        base, tp = self.settings.base_url, trigger.traceparent
        return RunRef(base, trigger.project, trigger.pipeline_id, run_id, latest_key=latest_key, traceparent=tp)

    def _latest(self, trigger: Trigger, deadline: Deadline) -> int:
        body = self.cdf.get_latest(trigger.project, trigger.pipeline_id, deadline)
        summary_of(body)
        job_id = body.get("jobId")
        if not is_integer(job_id):
            raise MalformedResponse("CDF answered a latest run without a valid jobId")
        return job_id

    def _deadlines(self, trigger: Trigger, budget_s: float | None, started_wall: float | None) -> Deadlines:
        now = self.clock.monotonic()
        born = trigger.publish_time.timestamp() if trigger.publish_time else (started_wall or None)
        budget = None if budget_s is None else now + budget_s
        return waits(now, self.wall(), born, self.settings.run_max_wait_s, budget)

    def _publish_error(self, events: list[Any], deadline: Deadline | None = None) -> int:
        return self.sink.publish(self.topics.errors, events, deadline)

    def _failed(self, event: Event, exc: PermanentError, deadline: Deadline | None) -> Outcome:
        """A refusal answered: its run.failed event published (a ``PublishFailed`` hands the message back)."""
        return Outcome("failed", exc.reason, self._publish_error([event], deadline), detail=str(exc))

    def now_ms(self) -> int:
        """The time of a decision, epoch milliseconds (ce-time of an event with no run)."""
        return epoch_ms(self.wall)


@dataclass
class _Attempt:
    """One trigger's run: resolved first when it is "latest", then polled until it is finished and published."""

    relay: Relay
    trigger: Trigger
    poller: Poller
    deadline: Deadline
    deadlines: Deadlines
    continue_to: str | None
    nowhere: bool  # the invocation has a deadline, but no topic to continue on
    run_id: int | None = field(init=False)
    ref: RunRef = field(init=False)

    def __post_init__(self) -> None:
        t = self.trigger
        self.run_id = t.run_id if isinstance(t.run_id, int) else None
        # Until "latest" is resolved, a failure is keyed by the message, so distinct failures keep distinct ids.
        latest_key = None if self.run_id is not None else (t.message_id or f"run-{self.relay.now_ms()}")
        self.ref = self.relay._ref(t, self.run_id, latest_key)

    def work(self) -> Outcome:
        r, t, poller = self.relay, self.trigger, self.poller
        if self.run_id is None:
            self.run_id = poller.until_done(lambda: r._latest(t, self.deadline), self.deadlines)
            self.ref = r._ref(t, self.run_id)
            log.info("resolved the latest run of pipeline %s: %s", t.pipeline_id, self.run_id)
        step = _Step(r, t, self.ref, poller, self.deadline, self.continue_to, warn_unbounded=self.nowhere)
        return poller.until_done(step, self.deadlines)

    def answer(self, exc: PermanentError) -> Outcome:
        """A refusal: ``run.failed`` with the last status the poller saw."""
        event = failed_event(self.ref, exc.reason, str(exc), self.poller.stats.last, self.relay.now_ms())
        return self.relay._failed(event, exc, self.deadline)


@dataclass
class _Step:
    """One poll of a run: ``None`` while it is not finished, else publish this segment and say how it ended."""

    relay: Relay
    trigger: Trigger
    ref: RunRef
    poller: Poller
    deadline: Deadline
    continue_to: str | None
    warn_unbounded: bool = False  # the invocation has a deadline, but nowhere to continue

    def __call__(self) -> Outcome | None:
        r, ref = self.relay, self.ref
        assert ref.pipeline_id is not None
        assert ref.run_id is not None
        with r.cdf.open_run(ref.project, ref.pipeline_id, ref.run_id, self.deadline) as chunks:
            body = RunBody(chunks)
            summary = self.poller.stats.last = summary_of(body.header())
            if still_running(summary):
                return None
            if summary.status == "Failed":
                summary = summary_of(body.drain())  # errors may follow the results
                event = failed_event(ref, "run_failed", summary.errorMessage, summary, r.now_ms())
                published = r._publish_error([event], self.deadline)
                return Outcome("failed", "run_failed", published, detail=summary.errorMessage or "")
            if self.warn_unbounded:
                log.warning("no trigger topic to continue on (RELAY_TRIGGER_TOPIC): publishing the run to the end")
            segment = Segment(body, self.trigger.continuation, self.deadline)
            published = r.sink.publish(r.topics.events, stream_events(ref, summary, segment), self.deadline)
        if segment.stopped:
            return self._continue(segment, published)
        return self._complete(body, published)

    def _complete(self, body: RunBody, published: int) -> Outcome:
        # run.completed goes last, once every match and rule event is confirmed: its counts close the run.
        final: RunSummary = summary_of(body.fields)
        n = body.counts
        completed = completed_event(self.ref, final, (n["matches"], n["suggestedRules"], n["generatedRules"]))
        published += self.relay.sink.publish(self.relay.topics.events, [completed], self.deadline)
        lag = None if final.statusTime is None else self.relay.wall() - final.statusTime / 1000
        return Outcome("completed", events=published, completed_lag_s=lag)

    def _continue(self, segment: Segment, published: int) -> Outcome:
        """Hand the rest of the run to a continuation trigger, once this segment's events are confirmed."""
        if segment.produced == 0 and segment.start.segment > 0:
            # A continuation that cannot move on would only publish itself again: let Pub/Sub's backoff decide.
            raise NothingPublished(f"segment {segment.start.segment} had no time to publish anything")
        ref, after = self.ref, segment.next
        assert ref.pipeline_id is not None
        assert ref.run_id is not None
        assert self.continue_to is not None
        message = continuation_message(ref.project, ref.pipeline_id, ref.run_id, after, ref.traceparent)
        self.relay.sink.publish(self.continue_to, [message], self.deadline)
        detail = f"segment {after.segment} goes on after {after.skip} items"
        return Outcome("continued", events=published, detail=detail)


def _handed_back(exc: HandBack) -> Outcome:
    return Outcome("handed_back", exc.code, detail=str(exc))
