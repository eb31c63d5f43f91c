"""What events carry: each type's data as a ``TypedDict``, documented field by field.

``TypedDict`` s, so that building a hundred thousand of them costs no model
instances, while pydantic still derives their JSON Schemas (``schemas/``,
regenerated with ``python -m schemas``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, with_config
from typing_extensions import TypedDict

from handlers.core.models import Reason, RuleMatchData, doc

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
        str | None, doc("The CDF project. Null only on an invalid trigger whose project is unreadable or not allowed.")
    ]
    pipelineId: Annotated[int | None, doc("The entity matching pipeline's id; null only when a trigger had none.")]
    runId: Annotated[
        int | None,
        doc("The run's id (CDF's jobId of the run); null when never known (an invalid trigger, an unresolved latest)."),
    ]
    jobId: Annotated[int | None, doc("The jobId CDF reported for the run; null when CDF was not read or gave none.")]


class MatchData(_Coordinates):
    """Data of a com.cognite.entitymatching.match event: one match of a completed run."""

    matchIndex: Annotated[
        int, doc("The match's position in the run's matches, from 0 (ce-subject match/{matchIndex}).")
    ]
    matchType: Annotated[str | None, doc("CDF's matchType, e.g. model or previously-confirmed (ce-matchtype).")]
    score: Annotated[float | None, doc("CDF's score for the match, as CDF gave it.")]
    source: Annotated[dict[str, Any], doc("The source item exactly as CDF returned it.")]
    target: Annotated[dict[str, Any], doc("The target item exactly as CDF returned it.")]
    sourceId: Annotated[Any, doc("source.id lifted to the top (CDF ids are integers); null where absent.")]
    sourceExternalId: Annotated[Any, doc("source.externalId lifted to the top; null where absent.")]
    targetId: Annotated[Any, doc("target.id lifted to the top (CDF ids are integers); null where absent.")]
    targetExternalId: Annotated[Any, doc("target.externalId lifted to the top; null where absent.")]


class _Parts(TypedDict, total=False):
    # Present only on a rule too large for one message, split into parts.
    part: Annotated[int, doc(_PART)]
    partCount: Annotated[int, doc(_PART_COUNT)]


@with_config(ConfigDict(extra="allow"))  # every field CDF gave for the rule is passed on, known or not
class SuggestedRuleData(_Coordinates, _Parts):
    """Data of a com.cognite.entitymatching.suggestedrule event: one suggested rule of a completed run, with every
    field CDF gave for it (the coordinates, ruleIndex, part and partCount are matchrelay's)."""

    ruleIndex: Annotated[int, doc("The rule's position in the run's suggestedRules, from 0.")]
    inputPattern: Annotated[str | None, doc("CDF's inputPattern of the rule.")]
    predictPattern: Annotated[str | None, doc("CDF's predictPattern of the rule.")]
    numMatches: Annotated[int | None, doc("CDF's numMatches of the rule.")]
    avgScore: Annotated[float | None, doc("CDF's avgScore of the rule.")]
    matchIndex: Annotated[
        list[int], doc("Positions in the run's matches (the match events' matchIndex) of this rule's matches.")
    ]
    matches: Annotated[list[RuleMatchData], doc(_RULE_MATCHES)]


class _Definition(TypedDict, total=False):
    # A generated rule's definition, present when CDF gives it (Cognite's application and SDK read these).
    extractors: Annotated[
        Any,
        doc(
            "The rule's extractors, "
            + _AS_GIVEN
            + ": a list of {entitySet (sources or targets), extractorType (regex), field, pattern}."
        ),
    ]
    conditions: Annotated[
        Any,
        doc(
            "The rule's conditions, "
            + _AS_GIVEN
            + ": a list of {conditionType (equals), arguments: [[extractorIndex, group], ...]}."
        ),
    ]
    priority: Annotated[Any, doc("The rule's priority, " + _AS_GIVEN + ".")]
    flags: Annotated[Any, doc("The rule's flags, " + _AS_GIVEN + ".")]
    conflicts: Annotated[Any, doc("The rule's conflicts with other rules, " + _AS_GIVEN + ".")]
    overlaps: Annotated[Any, doc("The rule's overlaps with other rules, " + _AS_GIVEN + ".")]
    numberOfMatches: Annotated[Any, doc("How many matches the rule made, " + _AS_GIVEN + ".")]


@with_config(ConfigDict(extra="allow"))  # every field CDF gave for the rule is passed on, known or not
class GeneratedRuleData(_Coordinates, _Parts, _Definition):
    """Data of a com.cognite.entitymatching.generatedrule event: one generated rule of a completed run, with every
    field CDF gave for it, its definition included (the coordinates, ruleIndex, part and partCount are matchrelay's)."""

    ruleIndex: Annotated[int, doc("The rule's position in the run's generatedRules, from 0.")]
    numConflicts: Annotated[int | None, doc("CDF's numConflicts of the rule; null when CDF gave none.")]
    numOverlaps: Annotated[int | None, doc("CDF's numOverlaps of the rule; null when CDF gave none.")]
    matches: Annotated[list[RuleMatchData], doc(_RULE_MATCHES)]


class RunCompletedData(_Coordinates):
    """Data of a com.cognite.entitymatching.run.completed event: the run's summary, published after every other event of
    the run is confirmed; its counts say how many match and rule events to expect."""

    status: Annotated[str, doc("The run's status: Completed.")]
    createdTime: Annotated[int | None, doc(f"When the run was created: {_TIME}.")]
    startTime: Annotated[int | None, doc(f"When the run started: {_TIME}.")]
    statusTime: Annotated[int | None, doc(f"When the run reached its status: {_TIME} (ce-time).")]
    matchCount: Annotated[int, doc("How many match events the run has (subjects match/0 to match/{matchCount-1}).")]
    suggestedRuleCount: Annotated[int, doc("How many suggested rules the run has; a rule sent in parts counts once.")]
    generatedRuleCount: Annotated[int, doc("How many generated rules the run has; a rule sent in parts counts once.")]
    errors: Annotated[list[str], doc("CDF's errors for the run, [] when none; the results are published anyway.")]


# A sweep's window of run creation times, [from, to); "from" is a keyword, so the functional form.
Window = TypedDict(
    "Window",
    {
        "from": Annotated[int, doc("Start of the window, epoch milliseconds, included.")],
        "to": Annotated[int, doc("End of the window, epoch milliseconds, excluded.")],
    },
)


class _Sweep(TypedDict, total=False):
    # Present only on the run.failed of a sweep CDF refused.
    window: Annotated[Window, doc("The sweep's window of run creation times; only on a sweep's run.failed.")]


class RunFailedData(_Coordinates, _Sweep):
    """Data of a com.cognite.entitymatching.run.failed event: the run failed in CDF, or matchrelay gave up on it. It
    closes the run instead of run.completed (same ce-id); match or rule events received before it are not a result."""

    status: Annotated[str | None, doc("The run's last status seen (Failed for run_failed); null if none was seen.")]
    reason: Annotated[
        Reason,
        doc(
            "Why: run_failed (CDF ran it and it failed), run_not_found (CDF answered 404), access_denied (403, or a "
            "401 on a fresh token), auth_failed (the token endpoint refused the credentials), invalid_request (another "
            "4xx), invalid_response (CDF's answers kept not having the documented shape), invalid_trigger (the trigger "
            "message was invalid; CDF was not asked), wait_timeout (the run did not finish within RUN_MAX_WAIT_S)."
        ),
    ]
    errorMessage: Annotated[
        str | None, doc("CDF's errorMessage for run_failed; for the other reasons, matchrelay's explanation.")
    ]
    errors: Annotated[list[str], doc("CDF's errors for the run, [] when none.")]
    createdTime: Annotated[int | None, doc(f"When the run was created: {_TIME}.")]
    startTime: Annotated[int | None, doc(f"When the run started: {_TIME}.")]
    statusTime: Annotated[int | None, doc(f"When the run reached its status: {_TIME}.")]


EVENT_DATA: dict[str, type] = {
    "com.cognite.entitymatching.match": MatchData,
    "com.cognite.entitymatching.suggestedrule": SuggestedRuleData,
    "com.cognite.entitymatching.generatedrule": GeneratedRuleData,
    "com.cognite.entitymatching.run.completed": RunCompletedData,
    "com.cognite.entitymatching.run.failed": RunFailedData,
}
