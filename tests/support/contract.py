"""The contract's section 5 (output events), written out once for the tests and ``bench/soak/``.

Copied from the text of the contract (``docs/contract.md``, section 5), never derived from ``handlers/``: it is
the independent oracle the events ``handlers`` builds are checked against. ``contract_problems`` checks one
event against all of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

TYPE_PREFIX = "com.cognite.entitymatching."

# Attributes on every event. An invalid trigger leaves out the coordinates it could not read.
BASE_ATTRIBUTES = frozenset(
    {"ce-specversion", "ce-type", "ce-source", "ce-id", "ce-subject", "ce-time", "content-type"}
)
COORDINATE_ATTRIBUTES = frozenset({"ce-cdfproject", "ce-pipelineid", "ce-runid"})
COMMON_ATTRIBUTES = BASE_ATTRIBUTES | COORDINATE_ATTRIBUTES


def _ordered(text: str) -> tuple[str, ...]:
    """A comma-separated list as the contract writes it, in its order."""
    return tuple(text.split(", "))


def _listed(text: str) -> frozenset[str]:
    """A comma-separated list as the contract's table writes it."""
    return frozenset(_ordered(text))


# The data fields of each type (the short type: ``ce-type`` less ``TYPE_PREFIX``), copied from the contract's table.
DATA_FIELDS: Mapping[str, frozenset[str]] = {
    "match": _listed(
        "project, pipelineId, runId, jobId, matchIndex, matchType, score, source, target, sourceId, "
        "sourceExternalId, targetId, targetExternalId"
    ),
    "suggestedrule": _listed(
        "project, pipelineId, runId, jobId, ruleIndex, inputPattern, predictPattern, numMatches, "
        "avgScore, matchIndex, matches"
    ),
    "generatedrule": _listed("project, pipelineId, runId, jobId, ruleIndex, numConflicts, numOverlaps, matches"),
    "run.completed": _listed(
        "project, pipelineId, runId, jobId, status, createdTime, startTime, statusTime, matchCount, "
        "suggestedRuleCount, generatedRuleCount, errors"
    ),
    "run.failed": _listed(
        "project, pipelineId, runId, jobId, status, reason, errorMessage, errors, createdTime, startTime, statusTime"
    ),
}
# The attributes only one type carries: ``ce-matchtype`` (match events only), ``ce-reason`` (``run.failed`` only).
TYPE_ATTRIBUTES: Mapping[str, frozenset[str]] = {
    kind: frozenset({"ce-matchtype"} if kind == "match" else {"ce-reason"} if kind == "run.failed" else set())
    for kind in DATA_FIELDS
}
# A rule too large for one message is split: its data gains these, and ce-subject ends in ``/part/{k}``.
SPLIT_FIELDS = _listed("part, partCount")
# A sweep's run.failed adds its window.
SWEEP_FIELDS = _listed("window")
# A rule's data carries every field CDF gave for the rule; CDF's generated rules also carry their definition, e.g.:
RULE_DEFINITION_FIELDS = _listed("extractors, conditions, priority, flags, numberOfMatches")
# Each of a rule's ``matches`` items carries every field CDF gave for it, e.g.:
RULE_MATCH_FIELDS = _listed("sourceKeyField, targetKeyField, source, target, existingMatchType, consistentMatch, score")
# Field names the table gives that are the worker's, and win over a field of CDF's with the same name.
WORKER_RULE_FIELDS = _listed("project, pipelineId, runId, jobId, ruleIndex, part, partCount")
RULE_KINDS = ("suggestedrule", "generatedrule")
# ``reason`` of a run.failed (and its ce-reason), in the contract's order.
REASONS = _ordered(
    "run_failed, run_not_found, access_denied, auth_failed, invalid_request, invalid_response, invalid_trigger, "
    "wait_timeout"
)
SUBJECTS: Mapping[str, re.Pattern[str]] = {
    "match": re.compile(r"match/(?P<index>0|[1-9][0-9]*)"),
    "suggestedrule": re.compile(r"suggestedrule/(?P<index>0|[1-9][0-9]*)(?:/part/(?P<part>0|[1-9][0-9]*))?"),
    "generatedrule": re.compile(r"generatedrule/(?P<index>0|[1-9][0-9]*)(?:/part/(?P<part>0|[1-9][0-9]*))?"),
    "run.completed": re.compile(r"run"),
    # A run's failure names its reason; a sweep's names its window too.
    "run.failed": re.compile(r"(?:sweep/(?P<window>[0-9]+-[0-9]+)/|run/)failed/(?P<reason>[a-z_]+)"),
}
# ce-source; an invalid trigger's (and a project sweep's) ends at /pipelines, a "latest" run not yet resolved ends
# in /runs/latest, a sweep of one pipeline at /runs.
SOURCE = re.compile(
    r"(?P<base>https?://[^/]+)/api/v1/projects/(?P<project>[A-Za-z0-9][A-Za-z0-9_-]*)/context/entitymatching"
    r"/pipelines(?:/(?P<pipeline>[1-9][0-9]*)/runs(?:/(?P<run>[1-9][0-9]*|latest))?)?"
)
RFC3339_MS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")  # use fullmatch
DECIMAL = re.compile(r"[0-9]+")
MAX_ID = 9007199254740991  # ids are 1 to 2^53 - 1 (section 2)
PUBSUB_MAX_MESSAGE = 10_000_000  # every event fits one Pub/Sub message (10 MB)
PUBSUB_MAX_ATTRIBUTE = 1024  # bytes in one Pub/Sub attribute value


def ce_time(epoch_ms: int) -> str:
    """The RFC 3339 rendering of ``epoch_ms`` computed exactly (integer arithmetic, four-digit year)."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def is_id(value: Any) -> bool:
    return type(value) is int and 1 <= value <= MAX_ID


def _decode(data: bytes | bytearray | Mapping[str, Any]) -> tuple[Any, list[str]]:
    """The event's data as a subscriber reads it, or the reasons it cannot be read."""
    if isinstance(data, bytes | bytearray):
        too_big = [f"data is {len(data)} bytes, over {PUBSUB_MAX_MESSAGE}"] if len(data) > PUBSUB_MAX_MESSAGE else []
        try:
            return json.loads(bytes(data).decode("utf-8")), too_big
        except ValueError as exc:
            return None, [*too_big, f"data is not UTF-8 JSON ({exc})"]
    decoded = dict(data)
    try:
        json.dumps(decoded, allow_nan=False).encode("utf-8")
    except (ValueError, TypeError) as exc:
        return decoded, [f"data cannot be serialized as UTF-8 JSON ({exc})"]
    return decoded, []


def _attribute_problems(attributes: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for name, value in attributes.items():
        if not isinstance(name, str) or not isinstance(value, str):
            problems.append(f"attribute {name!r} is not a string")
            continue
        try:
            if len(value.encode("utf-8")) > PUBSUB_MAX_ATTRIBUTE:
                problems.append(f"attribute {name} is over {PUBSUB_MAX_ATTRIBUTE} bytes")
        except UnicodeEncodeError:
            problems.append(f"attribute {name} is not UTF-8")
    return problems


def contract_problems(
    attributes: Mapping[str, str], data: bytes | bytearray | Mapping[str, Any], cdf_url: str | None = None
) -> list[str]:
    """What is wrong with one event (its attributes and its data) by section 5 alone; empty when nothing.

    ``data`` is the message body (bytes) or the data already decoded. With ``cdf_url``, ``ce-source`` must
    start with it. Checks that depend on an earlier one (the type, the data being an object, the subject,
    the field set, the attributes present) are skipped once it fails.
    """
    problems = _attribute_problems(attributes)
    if not all(isinstance(name, str) and isinstance(value, str) for name, value in attributes.items()):
        return problems
    decoded, unreadable = _decode(data)
    problems += unreadable
    if not isinstance(decoded, dict):
        return [*problems, "data is not a JSON object"]

    ce_type = attributes.get("ce-type", "")
    kind = ce_type.removeprefix(TYPE_PREFIX)
    if not ce_type.startswith(TYPE_PREFIX) or kind not in DATA_FIELDS:
        return [*problems, f"ce-type {ce_type!r}"]
    if attributes.get("ce-specversion") != "1.0":
        problems.append(f"ce-specversion {attributes.get('ce-specversion')!r}")
    if attributes.get("content-type") != "application/json":
        problems.append(f"content-type {attributes.get('content-type')!r}")
    names = set(attributes)
    if BASE_ATTRIBUTES - names:
        return [*problems, f"attributes {sorted(BASE_ATTRIBUTES - names)} missing"]
    if not names <= COMMON_ATTRIBUTES | TYPE_ATTRIBUTES[kind]:
        problems.append(f"attributes {sorted(names - COMMON_ATTRIBUTES - TYPE_ATTRIBUTES[kind])} not for {kind}")

    subject_text = attributes["ce-subject"]
    subject = SUBJECTS[kind].fullmatch(subject_text)
    if subject is None:
        return [*problems, f"ce-subject {subject_text!r} for {kind}"]
    part = subject.groupdict().get("part")
    fields = DATA_FIELDS[kind] | (SPLIT_FIELDS if part is not None else frozenset())
    fields |= SWEEP_FIELDS if subject.groupdict().get("window") else frozenset()
    if kind in RULE_KINDS:  # CDF's other fields come along, but never one by a name of the worker's
        wrong = (fields - set(decoded)) | (set(decoded) & WORKER_RULE_FIELDS - fields)
        if wrong:
            return [*problems, f"data fields {sorted(wrong)} missing or not the worker's"]
    elif set(decoded) != fields:
        return [*problems, f"data fields {sorted(set(decoded) ^ fields)} differ"]

    problems += _time_problems(kind, attributes["ce-time"], decoded)
    problems += _coordinate_problems(kind, attributes, decoded, cdf_url)
    problems += _type_problems(kind, subject, attributes, decoded)
    return problems


def _time_problems(kind: str, time: str, decoded: dict[str, Any]) -> list[str]:
    """ce-time: RFC 3339, UTC, milliseconds; a run event's is its statusTime."""
    if not RFC3339_MS.fullmatch(time):
        return [f"ce-time {time!r}"]
    try:
        datetime.fromisoformat(time.replace("Z", "+00:00"))
    except ValueError:
        return [f"ce-time {time!r} is no date"]
    if kind.startswith("run.") and type(decoded["statusTime"]) is int:
        try:
            expected = ce_time(decoded["statusTime"])
        except (OverflowError, ValueError):
            return [f"statusTime {decoded['statusTime']!r} has no RFC 3339 time"]
        if time != expected:
            return [f"ce-time {time!r} is not statusTime {expected!r}"]
    return []


def _coordinate_problems(
    kind: str, attributes: Mapping[str, str], decoded: dict[str, Any], cdf_url: str | None
) -> list[str]:
    """The attributes and the data agree on the run; ce-source and ce-id name it."""
    problems: list[str] = []
    project, pipeline, run = (attributes.get(name) for name in ("ce-cdfproject", "ce-pipelineid", "ce-runid"))
    for name, value in (("ce-pipelineid", pipeline), ("ce-runid", run)):
        if value is not None and not DECIMAL.fullmatch(value):
            problems.append(f"{name} {value!r} is not a decimal string")
    if problems:
        return problems
    if decoded["project"] != project:
        problems.append(f"project {decoded['project']!r} differs from ce-cdfproject {project!r}")
    if decoded["pipelineId"] != (int(pipeline) if pipeline is not None else None):
        problems.append(f"pipelineId {decoded['pipelineId']!r} differs from ce-pipelineid {pipeline!r}")
    if decoded["runId"] != (int(run) if run is not None else None):
        problems.append(f"runId {decoded['runId']!r} differs from ce-runid {run!r}")
    if not all(value is None or is_id(value) for value in (decoded["pipelineId"], decoded["runId"])):
        problems.append("pipelineId or runId is not an id")
    if not (decoded["jobId"] is None or type(decoded["jobId"]) is int):
        problems.append(f"jobId {decoded['jobId']!r}")

    ce_id, subject = attributes["ce-id"], attributes["ce-subject"]
    source = SOURCE.fullmatch(attributes["ce-source"])
    if source is None:
        problems.append(f"ce-source {attributes['ce-source']!r}")
    elif cdf_url is not None and source["base"] != cdf_url:
        problems.append(f"ce-source {attributes['ce-source']!r} is not under {cdf_url}")
    if kind == "run.failed" and SUBJECTS[kind].fullmatch(subject)["reason"] != decoded["reason"]:  # type: ignore[index]
        problems.append(f"ce-subject {subject!r} names another reason than {decoded['reason']!r}")
    if kind == "run.failed" and subject.startswith("sweep/"):
        return problems + _sweep_problems(project, pipeline, run, ce_id, subject, source)
    if kind == "run.failed" and decoded["reason"] == "invalid_trigger":
        if not ce_id.startswith("invalid-trigger/") or ce_id == "invalid-trigger/":
            problems.append(f"ce-id {ce_id!r} of an invalid trigger")
        if source is not None and (source["pipeline"] is not None or project not in (None, source["project"])):
            problems.append(f"ce-source {attributes['ce-source']!r} of an invalid trigger")
        return problems
    if project is None or pipeline is None:
        return [*problems, "ce-cdfproject or ce-pipelineid missing"]
    if source is not None and (source["project"], source["pipeline"]) != (project, pipeline):
        problems.append(f"ce-source {attributes['ce-source']!r} names another run")
    if run is not None:
        if source is not None and source["run"] != run:
            problems.append(f"ce-source {attributes['ce-source']!r} names another run")
        if ce_id != f"{project}/{pipeline}/{run}/{subject}":
            problems.append(f"ce-id {ce_id!r}")
    else:  # "latest" not yet resolved: only a run.failed, keyed by the message
        if kind != "run.failed" or (source is not None and source["run"] != "latest"):
            problems.append(f"ce-runid missing from {kind} with ce-source {attributes['ce-source']!r}")
        if not (ce_id.startswith(f"{project}/{pipeline}/latest/") and ce_id.endswith(f"/{subject}")):
            problems.append(f"ce-id {ce_id!r} of a run not yet resolved")
    return problems


def _sweep_problems(
    project: str | None, pipeline: str | None, run: str | None, ce_id: str, subject: str, source: Any
) -> list[str]:
    """A sweep CDF refused: no run, its id under the pipeline (or ``all``), its source at /runs (or /pipelines)."""
    problems = [] if run is None else [f"ce-runid {run!r} on a sweep's run.failed"]
    if ce_id != f"{project}/{pipeline or 'all'}/{subject}":
        problems.append(f"ce-id {ce_id!r} of a sweep")
    if source is not None and (source["pipeline"] != pipeline or source["run"] is not None):
        problems.append("ce-source of a sweep names another pipeline or a run")
    return problems


def _type_problems(
    kind: str, subject: re.Match[str], attributes: Mapping[str, str], decoded: dict[str, Any]
) -> list[str]:
    """What each type's data must hold beyond its field names."""
    problems: list[str] = []
    index = int(subject["index"]) if "index" in subject.groupdict() else None
    if kind == "match":
        if type(decoded["matchIndex"]) is not int or decoded["matchIndex"] != index:
            problems.append(f"matchIndex {decoded['matchIndex']!r} differs from ce-subject {subject.string!r}")
        for side in ("source", "target"):
            value = decoded[side]
            if not isinstance(value, dict):
                problems.append(f"{side} is not an object")
            elif (decoded[f"{side}Id"], decoded[f"{side}ExternalId"]) != (value.get("id"), value.get("externalId")):
                problems.append(f"{side}Id or {side}ExternalId differs from {side}")
        match_type = decoded["matchType"]
        if not (match_type is None or isinstance(match_type, str)):
            problems.append(f"matchType {match_type!r}")
        if not (decoded["score"] is None or type(decoded["score"]) in (int, float)):
            problems.append(f"score {decoded['score']!r}")
        if match_type is None:
            if "ce-matchtype" in attributes:
                problems.append("ce-matchtype for a match without matchType")
        elif isinstance(match_type, str):
            try:
                clipped = match_type.encode()[:PUBSUB_MAX_ATTRIBUTE].decode(errors="ignore")
            except UnicodeEncodeError:
                problems.append("matchType is not UTF-8")
            else:
                if attributes.get("ce-matchtype") != clipped:
                    problems.append("ce-matchtype differs from matchType")
    elif kind in ("suggestedrule", "generatedrule"):
        if type(decoded["ruleIndex"]) is not int or decoded["ruleIndex"] != index:
            problems.append(f"ruleIndex {decoded['ruleIndex']!r} differs from ce-subject {subject.string!r}")
        matches = decoded["matches"]
        if not isinstance(matches, list):
            problems.append("matches is not a list")
        elif not all(isinstance(m, dict) for m in matches):
            problems.append("matches items are not objects")
        if kind == "suggestedrule" and not (
            isinstance(decoded["matchIndex"], list) and all(type(i) is int for i in decoded["matchIndex"])
        ):
            problems.append("matchIndex is not a list of integers")
        part = subject.groupdict().get("part")
        if part is not None:
            n, count = decoded["part"], decoded["partCount"]
            if n != int(part) or not (type(n) is int and type(count) is int and 0 <= n < count):
                problems.append(f"part {n!r} of {count!r} for ce-subject {subject.string!r}")
    elif kind == "run.completed":
        if decoded["status"] != "Completed":
            problems.append(f"status {decoded['status']!r}")
        for name in ("matchCount", "suggestedRuleCount", "generatedRuleCount"):
            if not (type(decoded[name]) is int and decoded[name] >= 0):
                problems.append(f"{name} {decoded[name]!r}")
    if kind.startswith("run."):
        if not (isinstance(decoded["errors"], list) and all(isinstance(e, str) for e in decoded["errors"])):
            problems.append("errors is not a list of strings")
        if not all(decoded[n] is None or type(decoded[n]) is int for n in ("createdTime", "startTime", "statusTime")):
            problems.append("createdTime, startTime or statusTime is not epoch milliseconds")
    if kind == "run.failed":
        if decoded["reason"] not in REASONS or attributes.get("ce-reason") != decoded["reason"]:
            problems.append(f"reason {decoded['reason']!r} / ce-reason {attributes.get('ce-reason')!r}")
        if not (decoded["errorMessage"] is None or isinstance(decoded["errorMessage"], str)):
            problems.append(f"errorMessage {decoded['errorMessage']!r}")
        if not (decoded["status"] is None or isinstance(decoded["status"], str)):
            problems.append(f"status {decoded['status']!r}")
    return problems


def rule_problems(kind: str, datas: list[Mapping[str, Any]], cdf_rule: Mapping[str, Any]) -> list[str]:
    """What is wrong with the events of one rule, given the rule as CDF gave it; empty when nothing.

    ``datas`` are the events' data, decoded: the whole rule, or its parts in order. Every field CDF gave is there
    with CDF's value on every part (but one named like a field of the worker's), the table's fields CDF did not
    give are there too (``[]`` for the lists, else ``null``: matchrelay's choice), and the parts' ``matches``
    together are CDF's.
    """
    if not datas:
        return ["no event for the rule"]
    named = DATA_FIELDS[kind] - WORKER_RULE_FIELDS
    expected = {name: cdf_rule.get(name, [] if name in ("matchIndex", "matches") else None) for name in named}
    expected |= {name: value for name, value in cdf_rule.items() if name not in WORKER_RULE_FIELDS}
    matches = expected.pop("matches")
    problems: list[str] = []
    split = len(datas) > 1 or "part" in datas[0]
    for k, data in enumerate(datas):
        own = {name: value for name, value in data.items() if name not in WORKER_RULE_FIELDS and name != "matches"}
        if own != expected:
            differ = sorted(set(own) ^ set(expected)) or sorted(n for n in own if own[n] != expected[n])
            problems.append(f"event {k} of the rule: fields {differ} differ from CDF's rule")
        numbered = (data.get("part"), data.get("partCount"))
        if numbered != ((k, len(datas)) if split else (None, None)):
            problems.append(f"event {k} of the rule: part {numbered[0]!r} of {numbered[1]!r}")
    if [m for data in datas for m in data.get("matches", [])] != matches:
        problems.append("the rule's matches differ from CDF's")
    return problems
