"""Stage 1b: a sweep (contract, section 2b): find the runs created in a window, hand each on as a run trigger.

Lists the pipeline's runs (or every pipeline's, after listing the pipelines),
keeps each run whose ``createdTime`` lies in ``[from, to)``, and publishes one
run trigger per run to the trigger topic, each confirmed before the sweep acks.
It publishes no event unless CDF refuses the sweep (one ``run.failed`` keyed by
the window).

When the invocation's deadline comes before every pipeline of a project sweep is
read, the pipelines still to read are handed on as sweeps of one pipeline each,
with the same fixed window (only validated ids and the window's integers go into
them). A sweep of one pipeline that cannot be read before the deadline is handed
back (503) and starts over.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from handlers.cdf.listing import ListedRun, listed_runs, pages, pipeline_ids
from handlers.core.continuation import trigger_message
from handlers.core.deadline import Deadline
from handlers.core.errors import HandBack, InvalidTrigger, OutOfTime, PermanentError, RunNotFound, SweepTooLarge
from handlers.core.events import Event, RunRef
from handlers.core.normalize import failed_event
from handlers.core.poll import Deadlines, Poller
from handlers.core.trigger import WITHIN_PROJECT, Sweep
from handlers.core.window import FIELD, Window, resolve
from handlers.flow.invocation import ended
from handlers.flow.relay import Outcome, Relay
from handlers.process.logs import log_context

log = logging.getLogger("matchrelay")
FLUSH_AT = 1000  # run triggers held before publishing: one Pub/Sub request's worth


@dataclass
class SweepOutcome(Outcome):
    """How a sweep ended, with what its summary line reports."""

    window: Window | None = None
    pipelines: int = 0  # pipelines whose runs were read to the end
    triggers: int = 0  # run triggers published (and confirmed)
    skipped_runs: int = 0  # runs in the window that no trigger can name (skipped, or without a jobId)
    missing: int = 0  # pipelines that answered 404 (gone since they were listed)
    forwarded: int = 0  # pipelines handed on as sweeps of their own (the deadline came first)

    def summary(self) -> str:
        """The summary line's message: the window, the pipelines read, the run triggers published."""
        window = self.window.text if self.window else "?"
        text = (
            f"swept runs created in [{window}): read {self.pipelines} pipelines, published {self.triggers} run triggers"
        )
        return text + (f"; {self.forwarded} pipelines go on in sweeps of their own" if self.forwarded else "")

    def fields(self) -> dict[str, Any]:
        return {
            "window": self.window.as_data() if self.window else None,
            "pipelines": self.pipelines,
            "runTriggers": self.triggers,
            "skippedRuns": self.skipped_runs,
            "missingPipelines": self.missing,
            "forwardedPipelines": self.forwarded,
        }


@dataclass
class Sweeper:
    """Sweeps with the relay's CDF client, sink, clock and topics."""

    relay: Relay

    def sweep(self, sweep: Sweep, budget_s: float | None, deadline: Deadline, to: str | None) -> Outcome:
        """Publish a run trigger to ``to`` for every run created in the sweep's window; ``budget_s`` None: no budget."""
        r = self.relay
        window = resolve(sweep.span, sweep.publish_time, r.wall())
        if to is None:
            exc = InvalidTrigger(
                "invalid trigger: a sweep needs a topic for its run triggers: set RELAY_TRIGGER_TOPIC",
                message_id=sweep.message_id,
                project=sweep.project,
                pipeline_id=sweep.pipeline_id,
            )
            return r.invalid(exc, sweep.traceparent, deadline)
        poller = r.poller()
        now = r.clock.monotonic()
        deadlines = Deadlines(budget=None if budget_s is None else now + budget_s, wait=math.inf)
        job = _Job(r, sweep, window, poller, deadlines, deadline, to, SweepOutcome("swept", window=window))
        outcome = job.run()
        outcome.polls, outcome.retries = poller.stats.polls, poller.stats.retries
        return outcome


@dataclass
class _Job:
    """One sweep's state: what was found, what is still to publish."""

    relay: Relay
    sweep: Sweep
    window: Window
    poller: Poller
    deadlines: Deadlines
    deadline: Deadline
    to: str
    outcome: SweepOutcome
    pending: list[Event] = field(default_factory=list)

    def run(self) -> SweepOutcome:
        ended(self._sweep, self._handed_back, self._refused)
        if self.outcome.kind == "swept":
            self.outcome.detail = f"{self.outcome.triggers} run triggers for runs created in [{self.window.text})"
        return self.outcome

    def _refused(self, exc: PermanentError) -> None:
        self._flush()  # the runs found before CDF refused are real runs: relay them anyway
        self._fail(exc)

    def _handed_back(self, exc: HandBack) -> None:
        self.outcome.kind, self.outcome.reason, self.outcome.detail = "handed_back", exc.code, str(exc)

    def _sweep(self) -> None:
        one = self.sweep.pipeline_id
        try:
            ids = [one] if one is not None else self._pipelines()
        except OutOfTime as exc:
            raise SweepTooLarge("the project's pipelines could not all be listed in time") from exc
        for i, pipeline_id in enumerate(ids):
            with log_context(pipelineId=pipeline_id):
                try:
                    if not self.deadline.producing():
                        raise OutOfTime("the deadline came before this pipeline was read")
                    runs = self._runs(pipeline_id)
                except OutOfTime as exc:
                    if one is not None:
                        raise SweepTooLarge(f"pipeline {pipeline_id}'s runs could not all be read in time") from exc
                    self._forward(ids[i:])
                    break
                except RunNotFound as exc:
                    if one is not None and not self.sweep.within_project:
                        raise
                    log.warning("pipeline %s is gone (404 on its runs): skipped by the sweep: %s", pipeline_id, exc)
                    self.outcome.missing += 1
                    continue
            self._found(pipeline_id, runs)
        self._flush()

    def _pipelines(self) -> list[int]:
        """Every pipeline of the project, each once (CDF may list one on two pages while they change)."""
        cdf, project = self.relay.cdf, self.sweep.project
        seen: dict[int, None] = {}

        def fetch(cursor: str | None) -> dict[str, Any]:
            return cdf.list_pipelines(project, cursor, self.deadline)

        for ids in pages(fetch, pipeline_ids, self.poller, self.deadlines, self.deadline.producing):
            seen.update(dict.fromkeys(ids))
        return list(seen)

    def _runs(self, pipeline_id: int) -> list[ListedRun]:
        cdf, project = self.relay.cdf, self.sweep.project

        def fetch(cursor: str | None) -> dict[str, Any]:
            return cdf.list_runs(project, pipeline_id, cursor, self.deadline)

        found: list[ListedRun] = []
        for runs in pages(fetch, listed_runs, self.poller, self.deadlines, self.deadline.producing):
            found += runs
        return found

    def _found(self, pipeline_id: int, runs: list[ListedRun]) -> None:
        """Queue one run trigger per run of the window (each job once), publishing when a request's worth waits."""
        self.outcome.pipelines += 1
        job_ids: dict[int, None] = {}
        for run in runs:
            if run.created is None or not self.window.holds(run.created):
                continue
            if not run.relayable or run.job_id is None:
                self.outcome.skipped_runs += 1
                log.info("run %s (status %s) has nothing to relay: left out of the sweep", run.job_id, run.status)
                continue
            job_ids[run.job_id] = None
        self.relay.progress.found(pipelines=1, runs=len(job_ids))
        for job_id in job_ids:
            fields = {"pipelineId": pipeline_id, "runId": job_id, "project": self.sweep.project}
            self.pending.append(trigger_message(fields, self.sweep.traceparent))
        if len(self.pending) >= FLUSH_AT:
            self._flush()

    def _forward(self, ids: list[int]) -> None:
        """Hand the pipelines not yet read on as sweeps of one pipeline each, over the same fixed window."""
        self._flush()
        project, window = self.sweep.project, self.window.as_data()
        sweeps = [
            trigger_message(
                {"pipelineId": pipeline_id, FIELD: window, "project": project, WITHIN_PROJECT: True},
                self.sweep.traceparent,
            )
            for pipeline_id in ids
        ]
        self.outcome.forwarded = self.relay.sink.publish(self.to, sweeps, self.deadline)
        self.outcome.kind, self.outcome.detail = "continued", f"{len(ids)} pipelines go on in sweeps of their own"
        log.info("the deadline came first: %d pipelines go on in sweeps of one pipeline each", len(ids))

    def _flush(self) -> None:
        if self.pending:
            self.outcome.triggers += self.relay.sink.publish(self.to, self.pending, self.deadline)
            self.pending = []

    def _fail(self, exc: PermanentError) -> None:
        """CDF refused the sweep: one ``run.failed`` keyed by the window (the pipeline, or ``all``), and ack."""
        r, sweep = self.relay, self.sweep
        ref = RunRef(
            r.settings.base_url, sweep.project, sweep.pipeline_id, traceparent=sweep.traceparent, window=self.window
        )
        event = failed_event(ref, exc.reason, str(exc), None, r.now_ms())
        self.outcome.kind, self.outcome.reason, self.outcome.detail = "failed", exc.reason, str(exc)
        self.outcome.events = r.sink.publish(r.topics.errors, [event], self.deadline)
