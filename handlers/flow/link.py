"""The link of one run, in one invocation (contract, section 8): pipeline → matches → decide → writes → run.linked.

CDF is the progress record: every chunk of at most 1000 sources reads its
sources' links with ``byids`` and writes only what is not in place, so a
redelivery, a replay or a second command goes on from what CDF holds. Chunks are
ascending by source id and started in that order, ``READS`` at once, of which
``LINK_CONCURRENCY`` write at once (``handlers.flow.writer``); their ``Link``
objects are made as they are started, so a run's links are held as compact
columns (``handlers.core.plan``), never as a million objects.

Every ending is a ``LinkOutcome``: ``linked`` or ``refused`` (``run.linked``
published, with or without a reason), ``ignored`` (not this deployment's to
link), or ``handed_back`` (answer non-2xx: the deadline came, the instance is
stopping, or ``run.linked`` was not confirmed).
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from handlers.cdf.results import RunBody, read_pipeline
from handlers.core.deadline import Deadline
from handlers.core.decision import Counts, Resource, resource_of, resources_named
from handlers.core.errors import HandBack, PermanentError, RelayError, RunFailed
from handlers.core.events import RunRef
from handlers.core.link_events import LinkFacts, LinkRequest, linked_event
from handlers.core.models import RunSummary
from handlers.core.pairs import Pairs
from handlers.core.plan import Candidates, Plan
from handlers.core.poll import Poller, still_running, summary_of, waits
from handlers.core.provenance import run_key
from handlers.core.review_picks import Picks
from handlers.flow.handover import hand_over
from handlers.flow.invocation import Counted, ended
from handlers.flow.matches import matches
from handlers.flow.parts import LinkParts
from handlers.flow.writer import READS, ChunkWriter, outcomes

log = logging.getLogger("matchrelay")
AHEAD = 2  # chunks made and queued per worker: enough to keep every worker busy, few enough to hold little


@dataclass
class LinkOutcome(Counted):
    """How one link ended."""

    kind: Literal["linked", "refused", "ignored", "handed_back"]
    counts: Counts = field(default_factory=Counts)


@dataclass
class LinkJob:
    """The link of one run, in one invocation."""

    linker: LinkParts
    request: LinkRequest
    deadline: Deadline
    dry_run: bool
    counts: Counts = field(default_factory=Counts)
    facts: LinkFacts = field(init=False)
    summary: RunSummary | None = None
    pairs: Pairs | None = None  # the pipeline's confirmed and rejected pairs, read with it
    picks: Picks = field(default_factory=lambda: Picks(0.0, 0))  # the sources left for people (none until decided)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.facts = LinkFacts(self.dry_run, self.linker.settings.link_min_score)

    def run(self) -> LinkOutcome:
        """The whole link; a refusal is reported on ``run.linked``, a ``HandBack`` is the ``handed_back`` outcome,
        with the counts reached."""
        return ended(self._run, self._handed_back, lambda exc: self._report(exc.reason, str(exc)))

    def _run(self) -> LinkOutcome:
        resource = self._pipeline()
        if resource is None:
            what = f"{self.facts.source_resource} to {self.facts.target_resource}"
            return self._report("unsupported_resource", f"the pipeline links {what}: nothing to link")
        plan = self._plan()
        self.counts.merge(plan.counts)
        self.linker.progress.decided(outcomes(plan.counts))
        self._apply(plan, resource)
        job_id = self.summary.jobId if self.summary is not None else None
        self.counts.reviews = hand_over(self.linker, self.request, self.picks, job_id, self._time_ms(), self.deadline)
        return self._report(None, "")

    def _handed_back(self, exc: HandBack) -> LinkOutcome:
        return LinkOutcome("handed_back", exc.code, self.dry_run, self.counts, str(exc))

    def _pipeline(self) -> Resource | None:
        """The source resource, from the pipeline CDF holds; None when links are not made for it. Its lists of
        confirmed and rejected pairs are kept for the decision."""
        r = self.request
        pipeline, self.pairs = self.linker.resources.pipeline(r.project, r.pipeline_id, self.deadline, read_pipeline)
        source, target = resources_named(pipeline)
        self.facts = dataclasses.replace(self.facts, source_resource=source, target_resource=target)
        return resource_of(source, target)

    def _plan(self) -> Plan:
        """The run's matches read again from CDF (polled as section 4 says) and decided, source by source."""
        settings, clock, poller = self.linker.settings, self.linker.clock, self._poller()
        poller.progress = self.linker.progress  # a run still going shows its status, as `run` shows it
        now = clock.monotonic()
        born = self.request.publish_time.timestamp() if self.request.publish_time else None
        cutoff = self.deadline.cutoff  # the command polls without a budget, as `run` does
        budget = None if cutoff is None else min(now + settings.budget_s, cutoff)
        deadlines = waits(now, self.linker.wall(), born, settings.run_max_wait_s, budget)
        return poller.until_done(lambda: self._read_run(poller), deadlines)

    def _read_run(self, poller: Poller) -> Plan | None:
        r = self.request
        with self.linker.cdf.open_run(r.project, r.pipeline_id, r.run_id, self.deadline) as chunks:
            body = RunBody(chunks)
            self.summary = poller.stats.last = summary_of(body.header())  # the status a wait reports
            self.facts = dataclasses.replace(self.facts, job_id=self.summary.jobId)
            if still_running(self.summary):
                return None
            if self.summary.status == "Failed":
                raise RunFailed(self.summary.errorMessage or "CDF says the run failed")
            settings = self.linker.settings
            candidates = Candidates(self.pairs, settings.link_trust_rules)
            self.picks = Picks(
                settings.review_min_score, settings.review_max_events, self.pairs, settings.link_trust_rules
            )
            progress = self.linker.progress
            for first, batch in matches(body, self.deadline, "the run's matches"):  # hundreds of matches at a time
                candidates.extend(batch, first)
                progress.linking(matches=len(batch))
        return candidates.plan(settings.link_min_score, self.picks)

    def _apply(self, plan: Plan, resource: Resource) -> None:
        """Every chunk of links, started in source order (``READS`` reading at once, ``LINK_CONCURRENCY`` writing);
        a refusal stops those not started."""
        settings, r = self.linker.settings, self.request
        write = ChunkWriter(
            self.linker.resources,
            settings.backoff,
            self.linker.clock,
            r.project,
            run_key(r.project, r.pipeline_id, r.run_id),
            resource,
            self.deadline,
            settings.link_overwrite,
            self.dry_run,
            threading.Event(),
            threading.Semaphore(settings.link_concurrency),
            self.linker.progress,
            conflicted=self._conflicted,
        )
        workers = max(READS, settings.link_concurrency)
        results: list[tuple[Counts, RelayError | None]] = []
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="link") as pool:
            queued: deque[Future[tuple[Counts, RelayError | None]]] = deque()
            for links in plan.chunks():
                if len(queued) >= AHEAD * workers:
                    results.append(queued.popleft().result())
                queued.append(pool.submit(contextvars.copy_context().run, write, links))
            results += [future.result() for future in queued]
        for counts, _ in results:
            self.counts.merge(counts)
        errors = [error for _, error in results if error is not None]
        # A refusal is final (a redelivery would meet it again): report it. Else the time ran out: hand back.
        first = next((e for e in errors if isinstance(e, PermanentError)), None) or next(iter(errors), None)
        if first is not None:
            raise first

    def _conflicted(self, source: int, score: float | None, current: int) -> None:
        """A source left in conflict by a chunk's writer (any of the writing threads): one for people to review."""
        with self._lock:
            self.picks.note(source, score, "conflict", current)

    def _poller(self) -> Poller:
        settings = self.linker.settings
        return Poller(settings.backoff, self.linker.clock)

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
