"""``run.unlinked`` (contract, section 9.5): what the undo of one run's links did in CDF. Pure.

Its ``ce-id`` ends in a digest of its data without ``written``, as ``run.linked``'s
does: two unlinks that leave CDF the same publish the same id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field
from typing_extensions import TypedDict

from handlers.core.events import Event, RunRef, rfc3339
from handlers.core.link_events import digest
from handlers.core.models import Reason
from handlers.core.undo import UndoCounts

UNLINKED = "com.cognite.entitymatching.run.unlinked"


def _doc(text: str) -> Any:
    return Field(description=text)


_ITEMS = "Items the run's link wrote (listed by their matchrelay:run)"


class RunUnlinkedData(TypedDict):
    """Data of a com.cognite.entitymatching.run.unlinked event: what the undo of one run's links did in CDF. Each
    item whose matchrelay:run names the run is counted once, in one of unlinked, restored, changed, unverified or
    kept (none of them when the undo ended early with a reason)."""

    project: Annotated[str, _doc("The CDF project.")]
    pipelineId: Annotated[int, _doc("The entity matching pipeline's id.")]
    runId: Annotated[int, _doc("The run's id (its jobId) whose links were undone.")]
    dryRun: Annotated[bool, _doc("True when the undo decided and counted but wrote nothing (--dry-run).")]
    below: Annotated[float | None, _doc("--below: only links whose score is below this were put back; else null.")]
    sourceResource: Annotated[str | None, _doc("The pipeline's sources.resource; null when not read.")]
    reason: Annotated[
        Reason | Literal["unsupported_resource"] | None,
        _doc(
            "Null when the undo was done; else why it ended early: unsupported_resource, or a reason of run.failed "
            "when CDF refused (access_denied, run_not_found, ...). The counts are those reached by then."
        ),
    ]
    unlinked: Annotated[int, _doc(f"{_ITEMS} whose link was removed: assetId set to null, or the asset taken out.")]
    restored: Annotated[int, _doc(f"{_ITEMS} whose assetId was set back to the asset the link had replaced.")]
    changed: Annotated[int, _doc(f"{_ITEMS} relinked or unlinked since (or gone): left as they are.")]
    unverified: Annotated[int, _doc(f"{_ITEMS} without the provenance an exact undo needs: left as they are.")]
    kept: Annotated[int, _doc(f"{_ITEMS} whose score is not below 'below': left as they are.")]
    rejected: Annotated[int, _doc("Pairs put back and added to the pipeline's rejectedMatches (--reject).")]
    written: Annotated[int, _doc("Items this unlink wrote (0 under dryRun); not part of the ce-id's digest.")]


@dataclass(frozen=True)
class UndoFacts:
    """What ``run.unlinked`` says besides the counts."""

    dry_run: bool
    below: float | None = None
    source_resource: str | None = None
    reason: str | None = None


def unlinked_data(ref: RunRef, facts: UndoFacts, counts: UndoCounts) -> dict[str, Any]:
    coordinates = {k: v for k, v in ref.coordinates(None).items() if k != "jobId"}
    return {
        **coordinates,
        "dryRun": facts.dry_run,
        "below": facts.below,
        "sourceResource": facts.source_resource,
        "reason": facts.reason,
        **counts.data(),
    }


def unlinked_event(ref: RunRef, facts: UndoFacts, counts: UndoCounts, time_ms: int) -> Event:
    """``run.unlinked``: ``ce-subject`` ``unlinked``, ``ce-id`` ``{project}/{pipelineId}/{runId}/unlinked/{digest}``."""
    data = unlinked_data(ref, facts, counts)
    event_id = ref.event_id(f"unlinked/{digest(data)}")
    body = json.dumps(data, separators=(",", ":")).encode()
    return Event(body, ref.attributes("run.unlinked", "unlinked", rfc3339(time_ms), event_id))
