"""What the link leaves, handed to people (contract, section 10): ``link.review`` events, before ``run.linked``.

The link notes the sources it leaves (``handlers.core.review_picks``) while it
decides and writes; here the best-scored ``REVIEW_MAX_EVENTS`` of them are
chosen, the run's matches are read again from CDF for their candidates (memory
bounded by the chosen, not by the run), and one ``link.review`` each is
published to ``REVIEW_TOPIC`` and confirmed. Their ids are the run's and the
source's, so a redelivered link publishes the same events again.
"""

from __future__ import annotations

from collections.abc import Iterator

from handlers.cdf.results import RunBody
from handlers.core.deadline import Deadline
from handlers.core.events import Event, RunRef
from handlers.core.link_events import LinkRequest
from handlers.core.review_events import ReviewEvents
from handlers.core.review_picks import Picks
from handlers.flow.matches import matches
from handlers.flow.parts import LinkParts


def hand_over(
    parts: LinkParts, request: LinkRequest, picks: Picks, job_id: int | None, time_ms: int, deadline: Deadline
) -> int:
    """Publish the chosen sources' ``link.review`` events (none when none was left); how many were confirmed."""
    if picks.choose() == 0:
        return 0
    r = request
    with parts.cdf.open_run(r.project, r.pipeline_id, r.run_id, deadline) as chunks:
        body = RunBody(chunks)
        body.header()
        for first, batch in matches(body, deadline, "the run's matches again"):
            picks.gather(batch, first)
    ref = RunRef(parts.settings.base_url, r.project, r.pipeline_id, r.run_id, traceparent=r.traceparent)
    return parts.sink.publish(parts.review_topic, _events(ref, picks, job_id, time_ms), deadline)


def _events(ref: RunRef, picks: Picks, job_id: int | None, time_ms: int) -> Iterator[Event]:
    events = ReviewEvents(ref, job_id, time_ms)
    for review in picks.reviews():
        yield events.event(review)
