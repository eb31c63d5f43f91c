"""Shapes: what CDF answers (validated on the way in) and what events carry.

CDF's shapes are checked with pydantic so that "not the documented shape" is one
``ValidationError`` at the boundary; event data are ``TypedDict`` s so that
building a hundred thousand of them costs no model instances, while pydantic
still derives their JSON Schemas (``schemas/``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, TypeAdapter, field_validator, with_config
from typing_extensions import TypedDict, TypeIs

FINAL_STATUSES = ("Completed", "Failed")
MAX_ID = 9007199254740991  # 2**53 - 1, CDF's largest id


def is_integer(value: Any, low: int = 1, high: int = MAX_ID) -> TypeIs[int]:
    """A JSON integer (never a boolean) from ``low`` to ``high``; by default, a CDF id."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


class _Cdf(BaseModel):
    # CDF may add fields at any time; unknown ones are ignored, not an error.
    model_config = ConfigDict(extra="ignore", frozen=True)


# Epoch milliseconds that RFC 3339 can write (years 0001 to 9999): ce-time is made from statusTime.
EpochMs = Annotated[StrictInt, Field(ge=-62135596800000, le=253402300799999)]


class RunSummary(_Cdf):
    """The part of a run every answer has (run results, latest run)."""

    status: StrictStr
    createdTime: EpochMs | None = None
    startTime: EpochMs | None = None
    statusTime: EpochMs | None = None
    jobId: StrictInt | None = None
    errorMessage: StrictStr | None = None
    errors: list[StrictStr] = []

    @field_validator("errors", mode="before")
    @classmethod
    def _no_errors(cls, value: Any) -> Any:
        return [] if value is None else value  # "[] where CDF gave none"

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


@with_config(ConfigDict(extra="allow"))  # every field CDF gave for the pair is passed on, known or not
class RuleMatchData(TypedDict, total=False):
    """One match of a rule, with every field CDF gave (absent ones are left out); these are the known ones."""

    sourceKeyField: Annotated[str | None, _doc("The source field the rule matched on, as CDF gave it.")]
    targetKeyField: Annotated[str | None, _doc("The target field the rule matched on, as CDF gave it.")]
    source: Annotated[dict[str, Any], _doc("The source item exactly as CDF returned it.")]
    target: Annotated[dict[str, Any], _doc("The target item exactly as CDF returned it.")]
    existingMatchType: Annotated[str | None, _doc("CDF's existingMatchType of this pair.")]
    consistentMatch: Annotated[bool | None, _doc("CDF's consistentMatch flag for this pair.")]
    score: Annotated[Any, _doc("CDF's score for this pair (generated rules), as CDF gave it: not checked.")]


class CdfSuggestedRule(TypedDict, total=False):
    matches: list[RuleMatchData]
    inputPattern: str | None
    predictPattern: str | None
    numMatches: int | None
    avgScore: float | None
    matchIndex: list[int]


class CdfGeneratedRule(TypedDict, total=False):
    matches: list[RuleMatchData]
    numConflicts: int | None
    numOverlaps: int | None


# Validators for the rules of a results body, one at a time (a match is checked by hand: normalize._match). They
# check the types of the fields named here, strictly; any other field is passed on unchecked (handlers.core.rules).
SUGGESTED_RULE = TypeAdapter(CdfSuggestedRule)
GENERATED_RULE = TypeAdapter(CdfGeneratedRule)


def _doc(text: str) -> Any:
    """A field's description in the generated JSON Schemas (``python -m schemas``)."""
    return Field(description=text)


_TIME = "epoch milliseconds, as CDF gave it; null when CDF gave none"
_RULE_MATCHES = (
    "The rule's matches, each with every field CDF gave; on a split rule, this part's slice of them (every part holds "
    "a slice)."
)
_AS_GIVEN = "as CDF gave it (passed on, not checked)"
_PART = "Only on a rule too large for one Pub/Sub message, sent in parts: this part's number, from 0."
_PART_COUNT = "Only on a rule sent in parts: how many parts it has (a split rule counts once in run.completed)."


class _Coordinates(TypedDict):
    project: Annotated[
        str | None, _doc("The CDF project. Null only on an invalid trigger whose project is unreadable or not allowed.")
    ]
    pipelineId: Annotated[int | None, _doc("The entity matching pipeline's id; null only when a trigger had none.")]
    runId: Annotated[
        int | None,
        _doc(
            "The run's id (CDF's jobId of the run); null when never known (an invalid trigger, an unresolved latest)."
        ),
    ]
    jobId: Annotated[int | None, _doc("The jobId CDF reported for the run; null when CDF was not read or gave none.")]


class MatchData(_Coordinates):
    """Data of a com.cognite.entitymatching.match event: one match of a completed run."""

    matchIndex: Annotated[
        int, _doc("The match's position in the run's matches, from 0 (ce-subject match/{matchIndex}).")
    ]
    matchType: Annotated[str | None, _doc("CDF's matchType, e.g. model or previously-confirmed (ce-matchtype).")]
    score: Annotated[float | None, _doc("CDF's score for the match, as CDF gave it.")]
    source: Annotated[dict[str, Any], _doc("The source item exactly as CDF returned it.")]
    target: Annotated[dict[str, Any], _doc("The target item exactly as CDF returned it.")]
    sourceId: Annotated[Any, _doc("source.id lifted to the top (CDF ids are integers); null where absent.")]
    sourceExternalId: Annotated[Any, _doc("source.externalId lifted to the top; null where absent.")]
    targetId: Annotated[Any, _doc("target.id lifted to the top (CDF ids are integers); null where absent.")]
    targetExternalId: Annotated[Any, _doc("target.externalId lifted to the top; null where absent.")]


class _Parts(TypedDict, total=False):
    # Present only on a rule too large for one message, split into parts.
    part: Annotated[int, _doc(_PART)]
    partCount: Annotated[int, _doc(_PART_COUNT)]


@with_config(ConfigDict(extra="allow"))  # every field CDF gave for the rule is passed on, known or not
class SuggestedRuleData(_Coordinates, _Parts):
    """Data of a com.cognite.entitymatching.suggestedrule event: one suggested rule of a completed run, with every
    field CDF gave for it (the coordinates, ruleIndex, part and partCount are matchrelay's)."""

    ruleIndex: Annotated[int, _doc("The rule's position in the run's suggestedRules, from 0.")]
    inputPattern: Annotated[str | None, _doc("CDF's inputPattern of the rule.")]
    predictPattern: Annotated[str | None, _doc("CDF's predictPattern of the rule.")]
    numMatches: Annotated[int | None, _doc("CDF's numMatches of the rule.")]
    avgScore: Annotated[float | None, _doc("CDF's avgScore of the rule.")]
    matchIndex: Annotated[
        list[int], _doc("Positions in the run's matches (the match events' matchIndex) of this rule's matches.")
    ]
    matches: Annotated[list[RuleMatchData], _doc(_RULE_MATCHES)]


class _Definition(TypedDict, total=False):
    # A generated rule's definition, present when CDF gives it (Cognite's application and SDK read these).
    extractors: Annotated[
        Any,
        _doc(
            "The rule's extractors, "
            + _AS_GIVEN
            + ": a list of {entitySet (sources or targets), extractorType (regex), field, pattern}."
        ),
    ]
    conditions: Annotated[
        Any,
        _doc(
            "The rule's conditions, "
            + _AS_GIVEN
            + ": a list of {conditionType (equals), arguments: [[extractorIndex, group], ...]}."
        ),
    ]
    priority: Annotated[Any, _doc("The rule's priority, " + _AS_GIVEN + ".")]
    flags: Annotated[Any, _doc("The rule's flags, " + _AS_GIVEN + ".")]
    conflicts: Annotated[Any, _doc("The rule's conflicts with other rules, " + _AS_GIVEN + ".")]
    overlaps: Annotated[Any, _doc("The rule's overlaps with other rules, " + _AS_GIVEN + ".")]
    numberOfMatches: Annotated[Any, _doc("How many matches the rule made, " + _AS_GIVEN + ".")]


@with_config(ConfigDict(extra="allow"))  # every field CDF gave for the rule is passed on, known or not
class GeneratedRuleData(_Coordinates, _Parts, _Definition):
    """Data of a com.cognite.entitymatching.generatedrule event: one generated rule of a completed run, with every
    field CDF gave for it, its definition included (the coordinates, ruleIndex, part and partCount are matchrelay's)."""

    ruleIndex: Annotated[int, _doc("The rule's position in the run's generatedRules, from 0.")]
    numConflicts: Annotated[int | None, _doc("CDF's numConflicts of the rule; null when CDF gave none.")]
    numOverlaps: Annotated[int | None, _doc("CDF's numOverlaps of the rule; null when CDF gave none.")]
    matches: Annotated[list[RuleMatchData], _doc(_RULE_MATCHES)]


class RunCompletedData(_Coordinates):
    """Data of a com.cognite.entitymatching.run.completed event: the run's summary, published after every other event of
    the run is confirmed; its counts say how many match and rule events to expect."""

    status: Annotated[str, _doc("The run's status: Completed.")]
    createdTime: Annotated[int | None, _doc(f"When the run was created: {_TIME}.")]
    startTime: Annotated[int | None, _doc(f"When the run started: {_TIME}.")]
    statusTime: Annotated[int | None, _doc(f"When the run reached its status: {_TIME} (ce-time).")]
    matchCount: Annotated[int, _doc("How many match events the run has (subjects match/0 to match/{matchCount-1}).")]
    suggestedRuleCount: Annotated[int, _doc("How many suggested rules the run has; a rule sent in parts counts once.")]
    generatedRuleCount: Annotated[int, _doc("How many generated rules the run has; a rule sent in parts counts once.")]
    errors: Annotated[list[str], _doc("CDF's errors for the run, [] when none; the results are published anyway.")]


Reason = Literal[
    "run_failed",
    "run_not_found",
    "access_denied",
    "auth_failed",
    "invalid_request",
    "invalid_response",
    "invalid_trigger",
    "wait_timeout",
]


# A sweep's window of run creation times, [from, to); "from" is a keyword, so the functional form.
Window = TypedDict(
    "Window",
    {
        "from": Annotated[int, _doc("Start of the window, epoch milliseconds, included.")],
        "to": Annotated[int, _doc("End of the window, epoch milliseconds, excluded.")],
    },
)


class _Sweep(TypedDict, total=False):
    # Present only on the run.failed of a sweep CDF refused.
    window: Annotated[Window, _doc("The sweep's window of run creation times; only on a sweep's run.failed.")]


class RunFailedData(_Coordinates, _Sweep):
    """Data of a com.cognite.entitymatching.run.failed event: the run failed in CDF, or matchrelay gave up on it. It
    closes the run instead of run.completed (same ce-id); match or rule events received before it are not a result."""

    status: Annotated[str | None, _doc("The run's last status seen (Failed for run_failed); null if none was seen.")]
    reason: Annotated[
        Reason,
        _doc(
            "Why: run_failed (CDF ran it and it failed), run_not_found (CDF answered 404), access_denied (403, or a "
            "401 on a fresh token), auth_failed (the token endpoint refused the credentials), invalid_request (another "
            "4xx), invalid_response (CDF's answers kept not having the documented shape), invalid_trigger (the trigger "
            "message was invalid; CDF was not asked), wait_timeout (the run did not finish within RUN_MAX_WAIT_S)."
        ),
    ]
    errorMessage: Annotated[
        str | None, _doc("CDF's errorMessage for run_failed; for the other reasons, matchrelay's explanation.")
    ]
    errors: Annotated[list[str], _doc("CDF's errors for the run, [] when none.")]
    createdTime: Annotated[int | None, _doc(f"When the run was created: {_TIME}.")]
    startTime: Annotated[int | None, _doc(f"When the run started: {_TIME}.")]
    statusTime: Annotated[int | None, _doc(f"When the run reached its status: {_TIME}.")]


EVENT_DATA: dict[str, type] = {
    "com.cognite.entitymatching.match": MatchData,
    "com.cognite.entitymatching.suggestedrule": SuggestedRuleData,
    "com.cognite.entitymatching.generatedrule": GeneratedRuleData,
    "com.cognite.entitymatching.run.completed": RunCompletedData,
    "com.cognite.entitymatching.run.failed": RunFailedData,
}
