"""``review.applied`` (contract, section 10): what one decisions message did to a pipeline's lists and CDF. Pure.

Its ``ce-id`` is ``{project}/{pipelineId}/review/{digest}``, the digest taken
over the message's decisions as given, so a redelivery publishes the same id;
an invalid message's is ``invalid-decision/{messageId}``. ``ce-source`` is the
pipeline's URL.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field
from typing_extensions import TypedDict

from handlers.core.encode import dumps
from handlers.core.events import Event, RunRef, rfc3339
from handlers.core.models import Reason
from handlers.core.review import ReviewCounts

APPLIED = "com.cognite.entitymatching.review.applied"
REVIEW = "com.cognite.entitymatching.link.review"


def _doc(text: str) -> Any:
    return Field(description=text)


class ReviewAppliedData(TypedDict):
    """Data of a com.cognite.entitymatching.review.applied event: what one message of people's decisions did to the
    pipeline's confirmedMatches and rejectedMatches, and to CDF's links."""

    project: Annotated[str | None, _doc("The CDF project; null when an invalid message's could not be read.")]
    pipelineId: Annotated[int | None, _doc("The pipeline; null when an invalid message's could not be read.")]
    reason: Annotated[
        Reason | Literal["invalid_decision", "lists_raced"] | None,
        _doc(
            "Null when every decision was applied; invalid_decision when the message was not a valid decisions "
            "message (nothing was asked of CDF); else a reason of run.failed when CDF refused (access_denied, ...)."
        ),
    ]
    confirmed: Annotated[int, _doc("Pairs added to confirmedMatches (and taken out of rejectedMatches) now.")]
    rejected: Annotated[int, _doc("Pairs added to rejectedMatches (and taken out of confirmedMatches) now.")]
    unchanged: Annotated[int, _doc("Pairs that were already where the decision puts them.")]
    linked: Annotated[int, _doc("Links written for confirmed pairs named by ids (an asset in place is replaced).")]
    unlinked: Annotated[int, _doc("Links put back for rejected pairs whose link in place the pair had written.")]


class Candidate(TypedDict):
    """One of a source's best matches in the run, as CDF gave it."""

    targetId: Annotated[int | None, _doc("The target asset's id; null when CDF gave none.")]
    targetExternalId: Annotated[str | None, _doc("The target asset's externalId; null when CDF gave none.")]
    score: Annotated[float | None, _doc("The match's score; null when it had none (a confirmed or rule match).")]
    matchType: Annotated[str | None, _doc("The match's matchType as CDF gave it; null when none.")]
    matchIndex: Annotated[int, _doc("The match's place in the run's matches (0-based), as in its match event's id.")]


class LinkReviewData(TypedDict):
    """Data of a com.cognite.entitymatching.link.review event: a source the link of a run left for a person, with its
    best candidates. One event per source; the same id on every link of the run."""

    project: Annotated[str, _doc("The CDF project.")]
    pipelineId: Annotated[int, _doc("The entity matching pipeline's id.")]
    runId: Annotated[int, _doc("The run's id (its jobId).")]
    jobId: Annotated[int | None, _doc("The jobId CDF reported for the run.")]
    sourceId: Annotated[int, _doc("The source's id.")]
    sourceExternalId: Annotated[str | None, _doc("The source's externalId; null when CDF gave none.")]
    reason: Annotated[
        Literal["below_threshold", "ambiguous", "conflict"],
        _doc(
            "below_threshold: its best score is below LINK_MIN_SCORE (at or above REVIEW_MIN_SCORE); ambiguous: its "
            "best matches tie between different assets; conflict: it is linked to another asset, left as it is."
        ),
    ]
    current: Annotated[int | None, _doc("For a conflict, the asset id linked now; otherwise null.")]
    candidates: Annotated[list[Candidate], _doc("The source's best matches, at most 3, best first.")]


class ReviewEvents:
    """``link.review`` events of one run: ``ce-subject`` ``review/{sourceId}``, ``ce-id`` ``{run}/review/{sourceId}``,
    attribute ``ce-reason``. What every event of the run shares (the attributes but three, the coordinates) is made
    once: a run may hand over a hundred thousand sources, and this is the hand-over's own work per event."""

    def __init__(self, ref: RunRef, job_id: int | None, time_ms: int) -> None:
        self._base = ref.attributes("link.review", "", rfc3339(time_ms), "")
        self._ids = ref.event_id("review/")
        self._head = dumps(ref.coordinates(job_id))[:-1] + b","  # the data's first keys, its object left open

    def event(self, review: dict[str, Any]) -> Event:
        source = review["sourceId"]
        attributes = self._base.copy()
        attributes["ce-id"] = f"{self._ids}{source}"
        attributes["ce-subject"] = f"review/{source}"
        attributes["ce-reason"] = review["reason"]
        return Event(self._head + dumps(review)[1:], attributes)


def applied_event(
    ref: RunRef, digest: str | None, reason: str | None, counts: ReviewCounts, time_ms: int, message_id: str = ""
) -> Event:
    """``review.applied`` for the decisions of ``digest`` (None: an invalid message, keyed by its ``message_id``)."""
    data = {"project": ref.project if ref.known_project else None, "pipelineId": ref.pipeline_id, "reason": reason}
    data |= counts.data()
    subject = f"review/{digest}" if digest is not None else "review/invalid"
    event_id = f"{ref.project}/{ref.pipeline_id}/{subject}" if digest is not None else f"invalid-decision/{message_id}"
    attributes = ref.attributes("review.applied", subject, rfc3339(time_ms), event_id)
    attributes["ce-source"] = ref.source if ref.pipeline_id is None else f"{ref.source}/{ref.pipeline_id}"
    return Event(json.dumps(data, separators=(",", ":")).encode(), attributes)
