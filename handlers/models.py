"""Shapes: what CDF answers (validated on the way in) and what events carry.

CDF's shapes are checked with pydantic so that "not the documented shape" is one
``ValidationError`` at the boundary; event data are ``TypedDict`` s so that
building a hundred thousand of them costs no model instances, while pydantic
still derives their JSON Schemas (``schemas/``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, TypeAdapter
from typing_extensions import TypedDict

FINAL_STATUSES = ("Completed", "Failed")
MAX_ID = 9007199254740991  # 2**53 - 1, CDF's largest id


class _Cdf(BaseModel):
    # CDF may add fields at any time; unknown ones are ignored, not an error.
    model_config = ConfigDict(extra="ignore", frozen=True)


class RunSummary(_Cdf):
    """The part of a run every answer has (run results, latest run)."""

    status: StrictStr
    createdTime: StrictInt | None = None
    startTime: StrictInt | None = None
    statusTime: StrictInt | None = None
    jobId: StrictInt | None = None
    errorMessage: StrictStr | None = None
    errors: list[StrictStr] = []

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


class CdfMatch(TypedDict, total=False):
    matchType: str | None
    score: float | None
    source: dict[str, Any]
    target: dict[str, Any]


class CdfRuleMatch(TypedDict, total=False):
    sourceKeyField: str | None
    targetKeyField: str | None
    source: dict[str, Any]
    target: dict[str, Any]
    existingMatchType: str | None
    consistentMatch: bool | None


class CdfSuggestedRule(TypedDict, total=False):
    matches: list[CdfRuleMatch]
    inputPattern: str | None
    predictPattern: str | None
    numMatches: int | None
    avgScore: float | None
    matchIndex: list[int]


class CdfGeneratedRule(TypedDict, total=False):
    matches: list[CdfRuleMatch]
    numConflicts: int | None
    numOverlaps: int | None


# Validators for the items of a results body, one item at a time (streaming-friendly).
MATCH = TypeAdapter(CdfMatch)
SUGGESTED_RULE = TypeAdapter(CdfSuggestedRule)
GENERATED_RULE = TypeAdapter(CdfGeneratedRule)


class _Coordinates(TypedDict):
    project: str | None
    pipelineId: int | None
    runId: int | None
    jobId: int | None


class MatchData(_Coordinates):
    """Data of ``com.cognite.entitymatching.match``."""

    matchIndex: int
    matchType: str | None
    score: float | None
    source: dict[str, Any]
    target: dict[str, Any]
    sourceId: Any
    sourceExternalId: Any
    targetId: Any
    targetExternalId: Any


class RuleMatchData(TypedDict, total=False):
    sourceKeyField: str | None
    targetKeyField: str | None
    source: dict[str, Any]
    target: dict[str, Any]
    existingMatchType: str | None
    consistentMatch: bool | None


class _Parts(TypedDict, total=False):
    # Present only on a rule too large for one message, split into parts.
    part: int
    partCount: int


class SuggestedRuleData(_Coordinates, _Parts):
    """Data of ``com.cognite.entitymatching.suggestedrule``."""

    ruleIndex: int
    inputPattern: str | None
    predictPattern: str | None
    numMatches: int | None
    avgScore: float | None
    matchIndex: list[int]
    matches: list[RuleMatchData]


class GeneratedRuleData(_Coordinates, _Parts):
    """Data of ``com.cognite.entitymatching.generatedrule``."""

    ruleIndex: int
    numConflicts: int | None
    numOverlaps: int | None
    matches: list[RuleMatchData]


class RunCompletedData(_Coordinates):
    """Data of ``com.cognite.entitymatching.run.completed``."""

    status: str
    createdTime: int | None
    startTime: int | None
    statusTime: int | None
    matchCount: int
    suggestedRuleCount: int
    generatedRuleCount: int
    errors: list[str]


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


class RunFailedData(_Coordinates):
    """Data of ``com.cognite.entitymatching.run.failed``."""

    status: str | None
    reason: Reason
    errorMessage: str | None
    errors: list[str]
    createdTime: int | None
    startTime: int | None
    statusTime: int | None


EVENT_DATA: dict[str, type] = {
    "com.cognite.entitymatching.match": MatchData,
    "com.cognite.entitymatching.suggestedrule": SuggestedRuleData,
    "com.cognite.entitymatching.generatedrule": GeneratedRuleData,
    "com.cognite.entitymatching.run.completed": RunCompletedData,
    "com.cognite.entitymatching.run.failed": RunFailedData,
}
