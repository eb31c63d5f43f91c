"""What CDF answers, validated on the way in, and the reasons a run can fail.

CDF's shapes are checked with pydantic so that "not the documented shape" is one
``ValidationError`` at the boundary. What events carry is ``handlers.core.event_data``.
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


def doc(text: str) -> Any:
    """A field's description in the generated JSON Schemas (``python -m schemas``)."""
    return Field(description=text)


@with_config(ConfigDict(extra="allow"))  # every field CDF gave for the pair is passed on, known or not
class RuleMatchData(TypedDict, total=False):
    """One match of a rule, with every field CDF gave (absent ones are left out); these are the known ones."""

    sourceKeyField: Annotated[str | None, doc("The source field the rule matched on, as CDF gave it.")]
    targetKeyField: Annotated[str | None, doc("The target field the rule matched on, as CDF gave it.")]
    source: Annotated[dict[str, Any], doc("The source item exactly as CDF returned it.")]
    target: Annotated[dict[str, Any], doc("The target item exactly as CDF returned it.")]
    existingMatchType: Annotated[str | None, doc("CDF's existingMatchType of this pair.")]
    consistentMatch: Annotated[bool | None, doc("CDF's consistentMatch flag for this pair.")]
    score: Annotated[Any, doc("CDF's score for this pair (generated rules), as CDF gave it: not checked.")]


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
