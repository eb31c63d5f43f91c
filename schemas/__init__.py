"""JSON Schemas (draft 2020-12) of matchrelay's events, generated from ``handlers.core.event_data``.

``python -m schemas`` writes them; ``python -m schemas --check`` says whether the
committed files are current. For each type ``com.cognite.entitymatching.<type>``:

- ``<ce-type>.json``: the event's data (the Pub/Sub message body), from the
  ``TypedDict`` in ``handlers.core.event_data.EVENT_DATA``;
- ``<ce-type>.attributes.json``: its Pub/Sub message attributes (the ``ce-``
  context attributes of CloudEvents binary mode), from the contract's section 5.

``problems`` checks one received message against the committed files (the
tests validate every event they pull with it).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

DIRECTORY = Path(__file__).resolve().parent
BASE_URI = "https://matchrelay.dev/schemas/"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
PREFIX = "com.cognite.entitymatching."

_NUMBER = "^[1-9][0-9]*$"
_NAME = "^[A-Za-z0-9][A-Za-z0-9_-]*$"
_RUN = "[^/]+/[0-9]+/[0-9]+"  # {project}/{pipelineId}/{runId}
_SOURCE = (
    r"^https?://\S+/api/v1/projects/[A-Za-z0-9][A-Za-z0-9_-]*/context/entitymatching/pipelines"
    r"(/[0-9]+/runs(/([0-9]+|latest))?)?$"
)
_PIPELINE_SOURCE = (
    r"^https?://\S+/api/v1/projects/[A-Za-z0-9][A-Za-z0-9_-]*/context/entitymatching/pipelines(/[0-9]+)?$"
)
_RUN_URL = (
    "The run's URL in CDF: {CDF_URL}/api/v1/projects/{project}/context/entitymatching/pipelines/{pipelineId}/runs/"
    "{runId}; ends at /pipelines for an invalid trigger or a project sweep, at /runs/latest for an unresolved latest "
    "run, at /runs for a sweep of one pipeline."
)
_PIPELINE_URL = (
    "The pipeline's URL in CDF: {CDF_URL}/api/v1/projects/{project}/context/entitymatching/pipelines/{pipelineId}; "
    "ends at /pipelines for an invalid message whose pipeline could not be read."
)
_TRACEPARENT = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


def _reasons() -> str:
    from handlers.core.models import Reason

    return "(" + "|".join(get_args(Reason)) + ")"


_FAILED = f"run/failed/{_reasons()}"
_SWEEP_FAILED = f"sweep/[0-9]+-[0-9]+/failed/{_reasons()}"
_SUBJECTS = {
    "match": "^match/[0-9]+$",
    "suggestedrule": "^suggestedrule/[0-9]+(/part/[0-9]+)?$",
    "generatedrule": "^generatedrule/[0-9]+(/part/[0-9]+)?$",
    "run.completed": "^run$",
    "run.failed": f"^({_FAILED}|{_SWEEP_FAILED})$",
    "run.linked": "^linked$",
    "run.unlinked": "^unlinked$",
    "review.applied": "^review/([0-9a-f]{16}|invalid)$",
    "link.review": "^review/[0-9]+$",
}
# A run's failure, an unresolved "latest" keyed by its message, an invalid trigger, a sweep CDF refused.
_FAILED_ID = (
    f"^({_RUN}/{_FAILED}|[^/]+/[0-9]+/latest/.+/{_FAILED}|invalid-trigger/.+|[^/]+/([0-9]+|all)/{_SWEEP_FAILED})$"
)


def _models() -> dict[str, type]:
    """The data model of every ``ce-type``: the relay's (``handlers.core.event_data``), the link's ``run.linked`` and
    the undo's ``run.unlinked``."""
    from handlers.core.event_data import EVENT_DATA
    from handlers.core.link_events import LINKED, RunLinkedData
    from handlers.core.review_events import APPLIED, REVIEW, LinkReviewData, ReviewAppliedData
    from handlers.core.undo_events import UNLINKED, RunUnlinkedData

    link = {LINKED: RunLinkedData, UNLINKED: RunUnlinkedData, REVIEW: LinkReviewData, APPLIED: ReviewAppliedData}
    return {**EVENT_DATA, **link}


def event_types() -> list[str]:
    """Every ``ce-type`` matchrelay publishes."""
    return list(_models())


def data_schema(event_type: str) -> dict[str, Any]:
    """The schema of ``event_type``'s data, from its model in ``handlers.core.event_data``."""
    from pydantic import TypeAdapter
    from pydantic.json_schema import GenerateJsonSchema

    class _NoFieldTitles(GenerateJsonSchema):
        # pydantic titles each field after its name ("Pipelineid"): noise next to the description.
        def field_title_should_be_set(self, schema: Any) -> bool:
            return False

    generated = TypeAdapter(_models()[event_type]).json_schema(schema_generator=_NoFieldTitles)
    _close(generated)
    description = " ".join(generated.pop("description").split())
    generated.pop("title")
    return {
        "$schema": DRAFT,
        "$id": f"{BASE_URI}{event_type}.json",
        "title": f"{event_type} event data",
        "description": description + " The body of the Pub/Sub message (JSON); the attributes are in "
        f"{event_type}.attributes.json.",
        **generated,
    }


def _close(schema: Any) -> None:
    """``additionalProperties: false`` on every object with a fixed field list (the models), not on CDF's items nor
    on a model that says otherwise (a rule and its matches carry every field CDF gave)."""
    if isinstance(schema, dict):
        if "properties" in schema:
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            _close(value)
    elif isinstance(schema, list):
        for value in schema:
            _close(value)


def attributes_schema(event_type: str) -> dict[str, Any]:
    """The schema of ``event_type``'s Pub/Sub message attributes (contract, section 5)."""
    from handlers.core.models import Reason

    kind = event_type.removeprefix(PREFIX)
    failed = kind == "run.failed"
    event_id = _FAILED_ID if failed else f"^{_RUN}/{_SUBJECTS[kind][1:-1]}$"
    if kind in ("run.linked", "run.unlinked"):  # the subject, then a digest of the outcome
        event_id = f"^{_RUN}/{kind[4:]}/[0-9a-f]{{16}}$"
    reviewed = kind == "review.applied"  # a pipeline's, not a run's: its digest is of the decisions as given
    if reviewed:
        event_id = "^([^/]+/[0-9]+/review/[0-9a-f]{16}|invalid-decision/.+)$"
    properties: dict[str, Any] = {
        "ce-specversion": {"const": "1.0", "description": "CloudEvents version."},
        "ce-type": {"const": event_type, "description": "The event type."},
        "ce-source": {
            "type": "string",
            "pattern": _PIPELINE_SOURCE if reviewed else _SOURCE,
            "description": _PIPELINE_URL if reviewed else _RUN_URL,
        },
        "ce-id": {
            "type": "string",
            "pattern": event_id,
            "description": "{project}/{pipelineId}/{runId}/{ce-subject} (invalid-trigger/{messageId} for an invalid "
            "trigger, {project}/{pipelineId}/latest/{messageId}/{ce-subject} for an unresolved latest run, "
            "{project}/{pipelineId or all}/{ce-subject} for a sweep): the same event always has the same id, so "
            "deduplicate by it.",
        },
        "ce-subject": {"type": "string", "pattern": _SUBJECTS[kind], "description": "The event's part of the run."},
        "ce-time": {
            "type": "string",
            "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$",
            "description": "The run's statusTime in RFC 3339, UTC, milliseconds; for an error with no run, the time "
            "of the decision.",
        },
        "content-type": {"const": "application/json", "description": "The data is JSON."},
        "ce-cdfproject": {"type": "string", "pattern": _NAME, "description": "The run's CDF project."},
        "ce-pipelineid": {"type": "string", "pattern": _NUMBER, "description": "The run's pipeline id, in decimal."},
        "ce-runid": {"type": "string", "pattern": _NUMBER, "description": "The run's id, in decimal."},
        "ce-traceparent": {
            "type": "string",
            "pattern": _TRACEPARENT,
            "description": "W3C trace context of the trigger's trace (CloudEvents Distributed Tracing); present only "
            "when the trigger came with a valid trace.",
        },
    }
    required = ["ce-specversion", "ce-type", "ce-source", "ce-id", "ce-subject", "ce-time", "content-type"]
    if failed:
        properties["ce-reason"] = {"enum": list(get_args(Reason)), "description": "Why the run failed (data.reason)."}
        required.append("ce-reason")
    elif not reviewed:  # a completed run has all its coordinates; a failed one may lack what an invalid trigger lacked
        required += ["ce-cdfproject", "ce-pipelineid", "ce-runid"]
    if kind == "link.review":
        properties["ce-reason"] = {
            "enum": ["below_threshold", "ambiguous", "conflict"],
            "description": "Why the link left the source for a person (data.reason).",
        }
        required.append("ce-reason")
    if kind == "match":
        properties["ce-matchtype"] = {
            "type": "string",
            "description": "The match's matchType (data.matchType); absent when CDF gave none.",
        }
    return {
        "$schema": DRAFT,
        "$id": f"{BASE_URI}{event_type}.attributes.json",
        "title": f"{event_type} Pub/Sub attributes",
        "description": f"The Pub/Sub message attributes of a {event_type} event: its CloudEvents context "
        "attributes with a ce- prefix (binary content mode). Every value is a string.",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def generate() -> dict[str, dict[str, Any]]:
    """Every schema, by file name."""
    schemas: dict[str, dict[str, Any]] = {}
    for event_type in event_types():
        schemas[f"{event_type}.json"] = data_schema(event_type)
        schemas[f"{event_type}.attributes.json"] = attributes_schema(event_type)
    return schemas


def render(schema: Mapping[str, Any]) -> str:
    """A schema as it is committed: two-space JSON, one trailing newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write(directory: Path = DIRECTORY) -> list[str]:
    """Write every schema to ``directory`` and remove stale ones; return the names written or removed."""
    wanted = {name: render(schema) for name, schema in generate().items()}
    changed = []
    for path in sorted(directory.glob(f"{PREFIX}*.json")):
        if path.name not in wanted:
            path.unlink()
            changed.append(path.name)
    for name, text in wanted.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    return changed


def stale(directory: Path = DIRECTORY) -> list[str]:
    """The files in ``directory`` that differ from what ``python -m schemas`` would write (missing, changed, extra)."""
    wanted = {name: render(schema) for name, schema in generate().items()}
    present = {path.name: path.read_text(encoding="utf-8") for path in directory.glob(f"{PREFIX}*.json")}
    return sorted(name for name in wanted.keys() | present.keys() if wanted.get(name) != present.get(name))


@functools.cache
def _validator(name: str) -> Any:
    import jsonschema

    schema = json.loads((DIRECTORY / name).read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def problems(attributes: Mapping[str, str], data: Any) -> list[str]:
    """Where a received event departs from the committed schemas of its ``ce-type`` (empty: it conforms)."""
    event_type = attributes.get("ce-type", "")
    if not event_type.startswith(PREFIX) or not (DIRECTORY / f"{event_type}.json").exists():
        return [f"ce-type {event_type!r} has no schema in schemas/"]
    found = []
    for name, instance in ((f"{event_type}.attributes.json", dict(attributes)), (f"{event_type}.json", data)):
        for error in sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path)):
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            found.append(f"schemas/{name}: at {where}: {error.message}")
    return found
