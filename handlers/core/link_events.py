"""The link's two events (contract, section 8): the ``run.completed`` it reads, the ``run.linked`` it publishes. Pure.

``accept`` reads what functions-framework hands over for a message of the events
topic: the run to link (``LinkRequest``), a type the link does not act on
(``Other``, acked at once), or a ``run.completed`` it must not act on
(``Rejected``: invalid, of a project outside ``CDF_ALLOWED_PROJECTS``, of a
pipeline outside ``LINK_PIPELINES``; acked with a WARNING line). Nothing it
returns has touched a URL.

``linked_event`` builds ``run.linked``; its ``ce-id`` ends in a digest of its
data without ``written``, so two deliveries that leave CDF the same publish the
same id and a link that changes the outcome gets a new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field
from typing_extensions import TypedDict

from handlers.core.decision import Counts
from handlers.core.envelope import Envelope
from handlers.core.events import Event, RunRef, rfc3339
from handlers.core.models import Reason, is_integer

COMPLETED = "com.cognite.entitymatching.run.completed"
LINKED = "com.cognite.entitymatching.run.linked"
DIGEST_HEX = 16  # 64 bits of sha256: distinct outcomes of one run never meet by chance
MAX_EPOCH_MS = 253402300799999  # 9999-12-31T23:59:59.999Z: the last time RFC 3339 writes


@dataclass(frozen=True)
class LinkRequest:
    """A run to link: its coordinates and what the event said of it (never a match: CDF is asked for those)."""

    project: str
    pipeline_id: int
    run_id: int
    message_id: str = ""
    publish_time: datetime | None = None
    status_time: int | None = None  # the event's statusTime: ce-time when the link ends before CDF's run is read
    traceparent: str | None = None
    dry_run: bool | None = None  # None: LINK_DRY_RUN decides (the command's --dry-run says True)


@dataclass(frozen=True)
class Other:
    """A message of another type (or none): acked at once, untouched."""

    ce_type: str | None
    message_id: str


@dataclass(frozen=True)
class Rejected:
    """A ``run.completed`` this deployment does not act on, and why (``reason`` goes into the log line)."""

    reason: str  # invalid_event, project_not_allowed, pipeline_not_linked
    detail: str
    message_id: str
    project: str | None = None
    pipeline_id: int | None = None
    run_id: int | None = None


def accept(
    event_id: str, data: Any, *, allowed: tuple[str, ...], pipelines: frozenset[int]
) -> LinkRequest | Other | Rejected:
    """Read one message of the events topic (an event's data or a push body), as ``accept_envelope``."""
    return accept_envelope(Envelope.read(event_id, data), allowed=allowed, pipelines=pipelines)


def accept_envelope(
    envelope: Envelope, *, allowed: tuple[str, ...], pipelines: frozenset[int]
) -> LinkRequest | Other | Rejected:
    """What the link makes of one message of the events topic; ``pipelines`` empty means every pipeline."""
    message_id, attributes, ce_type = envelope.message_id, envelope.attributes, envelope.attribute("ce-type")
    if ce_type != COMPLETED or envelope.message is None:
        return Other(ce_type, message_id)
    body = envelope.body()
    if body is None:
        return Rejected("invalid_event", "the run.completed body is not a JSON object", message_id)
    project, pipeline_id, run_id = body.get("project"), body.get("pipelineId"), body.get("runId")
    allowed_project = project if isinstance(project, str) and project in allowed else None
    pipeline = pipeline_id if is_integer(pipeline_id) else None
    run = run_id if is_integer(run_id) else None

    def rejected(reason: str, detail: str) -> Rejected:
        return Rejected(reason, detail, message_id, allowed_project, pipeline, run)

    if pipeline is None or run is None or not isinstance(project, str):
        return rejected("invalid_event", "the run.completed does not name a run (project, pipelineId, runId)")
    said = {"ce-cdfproject": project, "ce-pipelineid": str(pipeline), "ce-runid": str(run)}
    if any(attributes.get(name, value) != value for name, value in said.items()):
        return rejected("invalid_event", "the run.completed's attributes name another run than its data")
    if allowed_project is None:
        return rejected("project_not_allowed", "the run's project is not one of CDF_ALLOWED_PROJECTS")
    if pipelines and pipeline not in pipelines:
        return rejected("pipeline_not_linked", f"pipeline {pipeline} is not one of LINK_PIPELINES")
    status_time = body.get("statusTime")
    status = status_time if is_integer(status_time, 0, MAX_EPOCH_MS) else None  # ce-time must be writable
    return LinkRequest(allowed_project, pipeline, run, message_id, envelope.publish_time, status)


def _doc(text: str) -> Any:
    return Field(description=text)


_COUNT = "Sources of the run whose best match"


class RunLinkedData(TypedDict):
    """Data of a com.cognite.entitymatching.run.linked event: what the link of one completed run did in CDF. Each
    source of the run is counted once, in one of linked, belowThreshold, conflict, ambiguous, rejected,
    unlinkable, sourceMissing or targetMissing (none of them when the link ended early with a reason)."""

    project: Annotated[str, _doc("The CDF project.")]
    pipelineId: Annotated[int, _doc("The entity matching pipeline's id.")]
    runId: Annotated[int, _doc("The run's id (its jobId).")]
    jobId: Annotated[int | None, _doc("The jobId CDF reported for the run; null when the run was not read.")]
    dryRun: Annotated[bool, _doc("True when the link decided and counted but wrote nothing (LINK_DRY_RUN).")]
    minScore: Annotated[float, _doc("LINK_MIN_SCORE: the score at or above which a non-confirmed match links.")]
    sourceResource: Annotated[str | None, _doc("The pipeline's sources.resource; null when not read.")]
    targetResource: Annotated[str | None, _doc("The pipeline's targets.resource; null when not read.")]
    reason: Annotated[
        Reason | Literal["unsupported_resource"] | None,
        _doc(
            "Null when the link was done; else why it ended early: unsupported_resource (the pipeline links other "
            "resources than time series, sequences, files or events to assets), or a reason of run.failed when CDF "
            "refused (access_denied, run_not_found, run_failed, ...). The counts are those reached by then."
        ),
    ]
    linked: Annotated[
        int,
        _doc(f"{_COUNT} is linked in CDF after this invocation (written now or found in place); dry run: would be."),
    ]
    belowThreshold: Annotated[
        int, _doc(f"{_COUNT} is neither confirmed nor a trusted rule's, and not scored at least minScore.")
    ]
    conflict: Annotated[int, _doc(f"{_COUNT} links elsewhere in a single-valued assetId, left as it is.")]
    ambiguous: Annotated[int, _doc("Sources whose best matches tie between different targets: none linked.")]
    rejected: Annotated[
        int, _doc("Sources whose every match is a pair of the pipeline's rejectedMatches: never linked by the link.")
    ]
    unlinkable: Annotated[int, _doc("Sources or targets without an integer id (a source without one: per match).")]
    sourceMissing: Annotated[int, _doc("Sources to link that no longer exist in CDF.")]
    targetMissing: Annotated[int, _doc("Sources to link whose target asset CDF refused as missing.")]
    reviews: Annotated[int, _doc("link.review events published (and confirmed) for the run, before this event.")]
    written: Annotated[int, _doc("Links this invocation wrote (0 under dryRun); not part of the ce-id's digest.")]


@dataclass(frozen=True)
class LinkFacts:
    """What ``run.linked`` says besides the counts."""

    dry_run: bool
    min_score: float
    source_resource: str | None = None
    target_resource: str | None = None
    reason: str | None = None
    job_id: int | None = None


def linked_data(ref: RunRef, facts: LinkFacts, counts: Counts) -> dict[str, Any]:
    return {
        **ref.coordinates(facts.job_id),
        "dryRun": facts.dry_run,
        "minScore": facts.min_score,
        "sourceResource": facts.source_resource,
        "targetResource": facts.target_resource,
        "reason": facts.reason,
        **counts.data(),
    }


def digest(data: Mapping[str, Any]) -> str:
    """The first 16 hex digits of sha256 over ``data`` less ``written``, as canonical JSON (keys sorted, no spaces,
    non-ASCII escaped)."""
    canonical = json.dumps({k: v for k, v in data.items() if k != "written"}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:DIGEST_HEX]


def linked_event(ref: RunRef, facts: LinkFacts, counts: Counts, time_ms: int) -> Event:
    """``run.linked``: ``ce-subject`` ``linked``, ``ce-id`` ``{project}/{pipelineId}/{runId}/linked/{digest}``."""
    data = linked_data(ref, facts, counts)
    event_id = ref.event_id(f"linked/{digest(data)}")
    body = json.dumps(data, separators=(",", ":")).encode()  # ASCII escapes: CDF's resource names are carried as given
    return Event(body, ref.attributes("run.linked", "linked", rfc3339(time_ms), event_id))
