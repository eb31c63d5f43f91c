"""The events' JSON Schemas (``schemas/``): current with the models, valid, and true to what matchrelay publishes."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import schemas
from handlers.core.errors import REASONS as HANDLER_REASONS
from handlers.core.events import Event, RunRef
from handlers.core.models import RunSummary
from handlers.core.normalize import completed_event, counts, failed_event, results_events
from handlers.core.rules import generated_rule_events, suggested_rule_events
from sim import make_run
from sim.rules import heavy_rule
from tests.conftest import ROOT, PubSub
from tests.support.contract import (
    DATA_FIELDS,
    REASONS,
    RULE_DEFINITION_FIELDS,
    RULE_KINDS,
    RULE_MATCH_FIELDS,
    SPLIT_FIELDS,
    SWEEP_FIELDS,
    TYPE_PREFIX,
)

TYPES = [TYPE_PREFIX + kind for kind in DATA_FIELDS]
CDF_URL = "https://westeurope-1.cognitedata.com"
REF = RunRef(CDF_URL, "demo", 7, 456)
SUMMARY = RunSummary.model_validate(
    {"status": "Completed", "createdTime": 1, "startTime": 2, "statusTime": 1730204346000, "jobId": 456}
)


def committed(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((schemas.DIRECTORY / name).read_text(encoding="utf-8"))
    return schema


def samples() -> list[Event]:
    """At least one event of each type and shape the normalizer builds: whole and split rules, every reason."""
    body = make_run(12, 2, 2, job_id=456)
    events = [*results_events(REF, SUMMARY, body), completed_event(REF, SUMMARY, counts(body))]
    big = make_run(20, 1, 1, rule_size=20)  # rules of 20 matches, sent in parts of at most 2000 bytes
    events += suggested_rule_events(REF, SUMMARY, 0, copy.deepcopy(big["suggestedRules"][0]), max_bytes=2000)
    events += generated_rule_events(REF, SUMMARY, 0, copy.deepcopy(big["generatedRules"][0]), max_bytes=2000)
    events += generated_rule_events(REF, SUMMARY, 1, heavy_rule(6000, g=1), max_bytes=6000)  # definition on each part
    unknown = {"matches": [{"score": "high", "why": [1]}], "numConflicts": 0, "priority": None, "confidence": {}}
    events += generated_rule_events(REF, SUMMARY, 2, unknown)  # fields the table does not name, of any type
    failed_run = RunSummary.model_validate({"status": "Failed", "errorMessage": "empty", "errors": ["e1"]})
    events += [failed_event(REF, reason, "why", None, 1730204346000) for reason in HANDLER_REASONS]
    events.append(failed_event(REF, "run_failed", "empty", failed_run, 1730204346000))
    latest = RunRef(CDF_URL, "demo", 7, None, latest_key="99")
    events.append(failed_event(latest, "run_not_found", "no run", None, 1730204346000))
    invalid = RunRef(CDF_URL, "demo", None, None, known_project=False, from_trigger=True)
    events.append(failed_event(invalid, "invalid_trigger", "bad", None, 1730204346000, "invalid-trigger/42"))
    return events


SAMPLES = samples()


def test_schemas_committed_files_match_models() -> None:
    """The committed schemas are exactly what ``python -m schemas`` generates from ``handlers.core.models`` today."""
    outdated = schemas.stale()
    assert outdated == [], f"schemas/ is out of date with handlers/core/models.py ({outdated}): run `python -m schemas`"


def test_schemas_one_data_and_one_attributes_file_per_type() -> None:
    """``schemas/`` holds a data and an attributes schema for each event type, section 5's among them, and nothing
    else."""
    names = sorted(path.name for path in schemas.DIRECTORY.glob("*.json"))
    every = schemas.event_types()
    assert names == sorted([f"{t}.json" for t in every] + [f"{t}.attributes.json" for t in every])
    assert every[: len(TYPES)] == TYPES


@pytest.mark.parametrize("name", sorted(path.name for path in schemas.DIRECTORY.glob("*.json")))
def test_schemas_are_valid_draft_2020_12(name: str) -> None:
    """Each file is a valid Draft 2020-12 schema with its own ``$id``, a title and a description."""
    schema = committed(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://matchrelay.dev/schemas/{name}"
    assert schema["title"].startswith(name.split(".json")[0].removesuffix(".attributes"))
    assert len(schema["description"]) > 40
    open_data = name.removeprefix(TYPE_PREFIX).removesuffix(".json") in RULE_KINDS  # a rule: every field CDF gave
    assert schema["additionalProperties"] is open_data


@pytest.mark.parametrize("kind", DATA_FIELDS)
def test_schemas_data_fields_are_the_contracts(kind: str) -> None:
    """Each data schema requires exactly the contract's fields and documents the optional ones it knows, described."""
    schema = committed(f"{TYPE_PREFIX}{kind}.json")
    fields = set(DATA_FIELDS[kind])
    optional = SPLIT_FIELDS if kind in RULE_KINDS else SWEEP_FIELDS if kind == "run.failed" else set()
    assert set(schema["required"]) == fields
    if kind == "generatedrule":  # the definition fields CDF gives are documented; any other field is allowed too
        assert set(schema["properties"]) >= fields | optional | RULE_DEFINITION_FIELDS
        assert set(schema["properties"]) - fields - optional - RULE_DEFINITION_FIELDS == {"conflicts", "overlaps"}
    else:
        assert set(schema["properties"]) == fields | optional
    assert all(prop.get("description") for prop in schema["properties"].values())


def test_schemas_rule_match_items_are_open_and_documented() -> None:
    """A rule's ``matches`` items allow any field CDF gives and document the known ones; ``source`` stays open."""
    for kind in RULE_KINDS:
        item = committed(f"{TYPE_PREFIX}{kind}.json")["$defs"]["RuleMatchData"]
        assert item["additionalProperties"] is True
        assert set(item["properties"]) == RULE_MATCH_FIELDS
        assert all(prop.get("description") for prop in item["properties"].values())
        assert item["properties"]["source"]["additionalProperties"] is True


def test_schemas_samples_cover_every_type() -> None:
    """The samples include every type of section 5, a split rule, a rule's definition and every run.failed reason."""
    assert {event.type for event in SAMPLES} == set(TYPES)
    assert any("/part/" in event.attributes["ce-subject"] for event in SAMPLES)
    assert any(set(json.loads(e.data)) >= RULE_DEFINITION_FIELDS for e in SAMPLES)
    assert {json.loads(e.data)["reason"] for e in SAMPLES if e.type.endswith("failed")} == set(REASONS)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.attributes["ce-id"])
def test_schemas_sample_from_normalize_validates(event: Event) -> None:
    """Every event ``handlers.core.normalize`` builds matches its type's data and attributes schemas."""
    assert schemas.problems(event.attributes, json.loads(event.data)) == []


def _sample(kind: str) -> tuple[dict[str, str], dict[str, Any]]:
    event = next(e for e in SAMPLES if e.type == TYPE_PREFIX + kind and "/part/" not in e.attributes["ce-subject"])
    return dict(event.attributes), json.loads(event.data)


def _drop(key: str) -> Any:
    return lambda d: d.pop(key)


def _set(key: str, value: Any) -> Any:
    return lambda d: d.__setitem__(key, value)


@pytest.mark.parametrize(
    ("kind", "change", "where"),
    [
        ("match", _drop("score"), "'score' is a required property"),
        ("match", _set("score", "0.9"), "at score"),
        ("match", _set("matchIndex", None), "at matchIndex"),
        ("match", _set("source", "src-1"), "at source"),
        ("match", _set("confidence", 0.9), "'confidence' was unexpected"),
        ("suggestedrule", _set("matchIndex", ["0"]), "at matchIndex/0"),
        ("suggestedrule", lambda d: d["matches"][0].__setitem__("consistentMatch", "yes"), "at matches/0"),
        ("generatedrule", _set("numConflicts", "2"), "at numConflicts"),
        ("generatedrule", _set("partCount", 1.5), "at partCount"),
        ("suggestedrule", _set("part", "1"), "at part"),
        ("generatedrule", _drop("ruleIndex"), "'ruleIndex' is a required property"),
        ("run.completed", _set("matchCount", 1.5), "at matchCount"),
        ("run.completed", _set("errors", [None]), "at errors/0"),
        ("run.completed", _drop("errors"), "'errors' is a required property"),
        ("run.failed", _set("reason", "timeout"), "at reason"),
        ("run.failed", _set("errors", "boom"), "at errors"),
    ],
)
def test_schemas_wrong_data_fails(kind: str, change: Any, where: str) -> None:
    """Data with a field missing, of the wrong type, or unknown does not validate, and the problem names the field."""
    attributes, data = _sample(kind)
    change(data)
    found = schemas.problems(attributes, data)
    assert found
    assert any(where in problem for problem in found), found


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_set("confidence", {"p": [0.5]}), id="unknown-field"),
        pytest.param(_set("priority", "high"), id="definition-field-of-any-type"),
        pytest.param(lambda d: d["matches"][0].__setitem__("why", None), id="unknown-match-field"),
    ],
)
def test_schemas_rule_data_allow_fields_cdf_adds(change: Any) -> None:
    """A rule event with a field CDF added, to the rule or to one of its matches, still validates."""
    attributes, data = _sample("generatedrule")
    change(data)
    assert schemas.problems(attributes, data) == []


@pytest.mark.parametrize(
    ("kind", "change", "where"),
    [
        ("match", _drop("ce-id"), "'ce-id' is a required property"),
        ("match", _set("ce-subject", "run"), "at ce-subject"),
        ("match", _set("ce-time", "2024-10-29T12:19:06Z"), "at ce-time"),
        ("run.completed", _drop("ce-runid"), "'ce-runid' is a required property"),
        ("run.completed", _set("ce-pipelineid", "007"), "at ce-pipelineid"),
        ("run.completed", _set("ce-reason", "run_failed"), "'ce-reason' was unexpected"),
        ("run.failed", _drop("ce-reason"), "'ce-reason' is a required property"),
        ("run.failed", _set("content-type", "text/plain"), "at content-type"),
        ("generatedrule", _set("ce-specversion", "0.3"), "at ce-specversion"),
    ],
)
def test_schemas_wrong_attributes_fail(kind: str, change: Any, where: str) -> None:
    """Attributes missing, malformed or not of the type do not validate, and the problem names the attribute."""
    attributes, data = _sample(kind)
    change(attributes)
    found = schemas.problems(attributes, data)
    assert any(where in problem for problem in found), found


def test_schemas_unknown_type_is_a_problem() -> None:
    """An event of a type with no schema is reported, not silently accepted."""
    attributes, data = _sample("match")
    attributes["ce-type"] = TYPE_PREFIX + "run.started"
    assert schemas.problems(attributes, data) == [f"ce-type '{TYPE_PREFIX}run.started' has no schema in schemas/"]


def test_schemas_stale_names_changed_missing_and_extra_files(tmp_path: Path) -> None:
    """``stale`` lists a changed, a missing and an extra file; ``write`` puts the directory right."""
    assert schemas.write(tmp_path)
    assert schemas.stale(tmp_path) == []
    changed = tmp_path / f"{TYPE_PREFIX}match.json"
    changed.write_text(changed.read_text().replace("matchIndex", "matchNo"))
    (tmp_path / f"{TYPE_PREFIX}run.failed.json").unlink()
    (tmp_path / f"{TYPE_PREFIX}run.started.json").write_text("{}\n")
    outdated = [f"{TYPE_PREFIX}match.json", f"{TYPE_PREFIX}run.failed.json", f"{TYPE_PREFIX}run.started.json"]
    assert schemas.stale(tmp_path) == outdated
    assert sorted(schemas.write(tmp_path)) == outdated
    assert schemas.stale(tmp_path) == []


def test_schemas_check_command_passes_on_the_committed_files() -> None:
    """``python -m schemas --check`` exits 0 on the repository as committed."""
    result = subprocess.run(
        [sys.executable, "-m", "schemas", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_schemas_drain_rejects_an_event_that_breaks_its_schema(pubsub: PubSub) -> None:
    """The tests' subscriber fails on a pulled event whose data breaks its schema, naming the event's ce-id."""
    attributes, data = _sample("match")
    data["score"] = "high"
    topic, sub = pubsub.topic("bad")
    pubsub.publisher.publish(topic, json.dumps(data).encode(), **attributes).result(timeout=30)
    with pytest.raises(AssertionError, match=r"event demo/7/456/match/0 does not match its schema: .*at score"):
        pubsub.drain(sub, at_least=1)


def test_schemas_every_field_is_in_the_subscriber_guide() -> None:
    """``docs/subscribers.md`` names every data field of every type and links every schema file."""
    guide = (ROOT / "docs" / "subscribers.md").read_text(encoding="utf-8")
    for name in sorted(path.name for path in schemas.DIRECTORY.glob("*.json")):
        assert name in guide, name
        schema = committed(name)
        if not name.endswith(".attributes.json"):
            missing = [field for field in schema["properties"] if f"`{field}`" not in guide]
            assert missing == [], f"{name}: fields not described in docs/subscribers.md: {missing}"
