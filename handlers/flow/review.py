"""People's decisions applied (contract, section 10): the pipeline's lists → the links → review.applied.

The lists go first, through ``handlers.flow.lists.settle``: read, merge the
decisions, set the lists that changed, read again, and merge again after a
racing writer (three writes, then a hand-back). Then the links of pairs named by
ids: a rejected pair whose link in place the pair wrote is put back
(``handlers.core.undo``), and a confirmed pair is written as the link writes,
replacing an asset in place (``matchrelay:previous``), with ``matchrelay:run``
``{project}/{pipelineId}/review``. CDF is the progress record: a redelivery
finds every pair and link where it belongs and changes nothing.

Every ending is a ``ReviewOutcome``: ``applied`` or ``refused``
(``review.applied`` published, with or without a reason) or ``handed_back``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from handlers.core.deadline import Deadline
from handlers.core.decision import Link, Resource, resource_of, resources_named
from handlers.core.errors import HandBack, InvalidDecision, OutOfTime
from handlers.core.events import RunRef
from handlers.core.review import Decision, Decisions, ReviewCounts, last_words, merged, read_decisions
from handlers.core.review_events import applied_event
from handlers.core.undo import PutBack, undo
from handlers.flow.invocation import Arrival, Counted, ended, summarize
from handlers.flow.lists import Lists, settle
from handlers.flow.parts import LinkParts
from handlers.flow.unlink import put_back_updates
from handlers.flow.writer import ChunkWriter
from handlers.process.logs import log_context


@dataclass
class ReviewOutcome(Counted):
    """How one decisions message ended."""

    kind: Literal["applied", "refused", "handed_back"]
    counts: ReviewCounts = field(default_factory=ReviewCounts)


@dataclass
class ReviewJob:
    """One decisions message applied, in one invocation; ``topic`` is where ``review.applied`` goes."""

    parts: LinkParts
    decisions: Decisions
    deadline: Deadline
    topic: str
    dry_run: bool = False
    counts: ReviewCounts = field(default_factory=ReviewCounts)

    def run(self) -> ReviewOutcome:
        """The whole message; a refusal is reported on ``review.applied``, a ``HandBack`` hands the message back."""
        return ended(self._run, self._handed_back, lambda exc: self._report(exc.reason, str(exc)))

    def _run(self) -> ReviewOutcome:
        d, resources = self.decisions, self.parts.resources
        words = last_words(d.decisions)

        first: list[ReviewCounts] = []  # what the lists as first read lacked: the counts

        def changes(lists: Lists) -> Lists:
            wanted, counts = merged(lists, words)
            first.append(counts)
            return wanted

        fields, _ = settle(resources, d.project, d.pipeline_id, changes, self.deadline, dry_run=self.dry_run)
        self.counts = first[0]
        resource = resource_of(*resources_named(fields))
        if resource is not None:  # links are made for this pipeline's resources: a person's word applies at once
            if not self.deadline.producing():  # the lists hold the decisions: a redelivery writes the links
                raise OutOfTime("the deadline came before the decisions' links were written")
            self._put_back([w for w in words if not w.confirm and _by_ids(w)], resource)
            self._link([w for w in words if w.confirm and _by_ids(w)], resource)
        return self._report(None, "")

    def _put_back(self, rejects: list[Decision], resource: Resource) -> None:
        """Each rejected pair whose link in place the pair wrote (its ``matchrelay:asset``), put back."""
        if not rejects:
            return
        d, resources = self.decisions, self.parts.resources
        items = resources.by_ids(d.project, resource.path, sorted({int(r.source) for r in rejects}), self.deadline)
        puts = []
        for reject in rejects:
            item = items.get(int(reject.source))
            decided = None if item is None else undo(item, resource)
            if isinstance(decided, PutBack) and decided.asset == reject.target:
                puts.append(decided)
        if puts and not self.dry_run:
            updates = put_back_updates(puts, resource)
            self.counts.unlinked += len(resources.update(d.project, resource.path, updates, self.deadline).written)
        elif puts:
            self.counts.unlinked += len(puts)

    def _link(self, confirms: list[Decision], resource: Resource) -> None:
        """Each confirmed pair's link, written as the link writes it (one source, one link: the last word)."""
        by_source = {int(c.source): int(c.target) for c in confirms}
        if not by_source:
            return
        d, parts = self.decisions, self.parts
        settings = parts.settings
        write = ChunkWriter(
            parts.resources,
            settings.backoff,
            parts.clock,
            d.project,
            f"{d.project}/{d.pipeline_id}/review",
            resource,
            self.deadline,
            True,  # a person decided: an asset in place is replaced, and kept as matchrelay:previous
            self.dry_run,
            threading.Event(),
            threading.Semaphore(settings.link_concurrency),
        )
        counts, error = write([Link(source, target, None, True) for source, target in sorted(by_source.items())])
        if error is not None:
            raise error
        self.counts.linked += counts.written if not self.dry_run else counts.linked

    def _handed_back(self, exc: HandBack) -> ReviewOutcome:
        return ReviewOutcome("handed_back", exc.code, self.dry_run, self.counts, str(exc))

    def _report(self, reason: str | None, detail: str) -> ReviewOutcome:
        """Publish ``review.applied`` with the counts reached; raises ``PublishFailed`` when it is not confirmed."""
        d, parts = self.decisions, self.parts
        ref = RunRef(parts.settings.base_url, d.project, d.pipeline_id)
        parts.sink.publish(
            self.topic, [applied_event(ref, d.digest, reason, self.counts, parts.now_ms())], self.deadline
        )
        return ReviewOutcome("applied" if reason is None else "refused", reason, self.dry_run, self.counts, detail)


def handle(parts: LinkParts, arrival: Arrival, topic: str) -> ReviewOutcome:
    """One message of the decisions topic, start to end: read it, apply it, log one summary line. An invalid message
    is acked with a WARNING line and ``review.applied`` with reason ``invalid_decision``; CDF is not asked."""
    settings, envelope = parts.settings, arrival.envelope
    with log_context(messageId=envelope.message_id, **arrival.log_fields(settings.google_cloud_project)):
        try:
            body = envelope.body()
            if body is None:
                raise InvalidDecision("invalid decisions: the message body is not a base64 JSON object")
            decisions = read_decisions(body, default_project=settings.cdf_project, allowed=settings.allowed_projects)
        except InvalidDecision as exc:
            invalid = exc
            outcome = ended(lambda: _invalid(parts, invalid, envelope.message_id, arrival.deadline, topic), _gave_up)
            summarize(*summary_line(outcome), arrival.received, parts.clock.monotonic)
            return outcome
        with log_context(project=decisions.project, pipelineId=decisions.pipeline_id):
            outcome = ReviewJob(parts, decisions, arrival.deadline, topic).run()
            summarize(*summary_line(outcome), arrival.received, parts.clock.monotonic)
            return outcome


def _invalid(parts: LinkParts, exc: InvalidDecision, message_id: str, deadline: Deadline, topic: str) -> ReviewOutcome:
    ref = RunRef(parts.settings.base_url, exc.project or parts.settings.cdf_project, exc.pipeline_id)
    ref = dataclasses.replace(ref, known_project=exc.project is not None)
    event = applied_event(ref, None, exc.reason, ReviewCounts(), parts.now_ms(), message_id)
    parts.sink.publish(topic, [event], deadline)
    return ReviewOutcome("refused", exc.reason, detail=str(exc))


def _gave_up(exc: HandBack) -> ReviewOutcome:
    return ReviewOutcome("handed_back", exc.code, detail=str(exc))


def summary_line(outcome: ReviewOutcome) -> tuple[int, str, dict[str, Any]]:
    """How a message ended, as the function's summary line and the command's last line say it: level, message, and
    every count as a field."""
    n = outcome.counts
    if outcome.kind == "applied":
        done = f"{n.confirmed} confirmed, {n.rejected} rejected, {n.unchanged} unchanged"
        return logging.INFO, f"decisions applied: {done}; {n.linked} linked, {n.unlinked} unlinked", outcome.fields()
    if outcome.kind == "refused":
        return logging.WARNING, f"published review.applied ({outcome.reason}): {outcome.detail}", outcome.fields()
    level = logging.ERROR if outcome.reason in ("publish_failed", "lists_raced") else logging.INFO
    return level, f"handed the message back for redelivery: {outcome.detail}", outcome.fields()


def _by_ids(decision: Decision) -> bool:
    """A pair named by ids: its link can be written or put back now (one named by external ids waits for a run)."""
    return type(decision.source) is int and type(decision.target) is int
