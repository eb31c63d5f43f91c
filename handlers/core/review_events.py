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

from handlers.core.events import Event, RunRef, rfc3339
from handlers.core.models import Reason
from handlers.core.review import ReviewCounts

APPLIED = "com.cognite.entitymatching.review.applied"


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
