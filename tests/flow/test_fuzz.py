"""Fuzzing the two inputs others control: trigger messages and CDF's results bodies (contract, sections 2, 4, 5).

Each is fuzzed twice: the pure stages with many examples (``handlers.core.trigger.parse_event``; ``RunBody`` →
``summary_of`` → ``stream_events``/``completed_event``/``failed_event`` in the order ``Relay._step`` runs
them), and the function as deployed (functions-framework, the CDF simulator, the Pub/Sub emulator) with
fewer, using the pure stages as the oracle. ``assert_contract_event`` checks one event against section 5.

The bugs it found (lone surrogates, statusTime beyond RFC 3339's years, ce-time rounding) are fixed; their
minimal examples stay at the end as regression tests.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as label
from hypothesis import strategies as st

from handlers.cdf.results import RunBody
from handlers.core.errors import InvalidResponse, InvalidTrigger, MalformedResponse
from handlers.core.events import Event, RunRef, rfc3339
from handlers.core.normalize import completed_event, failed_event, stream_events
from handlers.core.poll import summary_of
from handlers.core.trigger import Trigger, parse_event
from sim import CdfSimulator, Step, make_run
from tests.conftest import PubSub, Received, Topics, deliver, load_app, pubsub_message
from tests.support.contract import (
    MAX_ID,
    RULE_DEFINITION_FIELDS,
    RULE_MATCH_FIELDS,
    TYPE_PREFIX,
    WORKER_RULE_FIELDS,
    ce_time,
    contract_problems,
    is_id,
    rule_problems,
)

ALLOWED = ("demo", "other")
SUBSCRIPTION = "projects/matchrelay-test/subscriptions/eventarc-sub"
# statusTime across every year RFC 3339 can write, and beyond it (those answers are malformed).
SAFE_STATUS_TIME = (-62135596800000 - 10**6, 253402300799999 + 10**6)

PURE = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
END_TO_END = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


# --- the contract's section 5, as one check -------------------------------------------------------------------------


def assert_contract_event(
    attributes: Mapping[str, str], data: bytes | Mapping[str, Any], cdf_url: str | None = None
) -> dict[str, Any]:
    """Check one event against the contract's section 5 (``tests.support.contract``) and return its data, decoded."""
    problems = contract_problems(attributes, data, cdf_url)
    assert problems == [], problems
    decoded: dict[str, Any] = json.loads(data) if isinstance(data, bytes | bytearray) else dict(data)
    return decoded


def assert_complete_run(events: list[Event]) -> None:
    """A completed run's events: matches numbered in order, run.completed last with counts that match."""
    kinds = [e.type.removeprefix(TYPE_PREFIX) for e in events]
    assert kinds[-1] == "run.completed"
    assert kinds.count("run.completed") == 1
    datas = [json.loads(e.data) for e in events]
    matches = [d["matchIndex"] for k, d in zip(kinds, datas, strict=True) if k == "match"]
    assert matches == list(range(len(matches)))
    suggested = {d["ruleIndex"] for k, d in zip(kinds, datas, strict=True) if k == "suggestedrule"}
    generated = {d["ruleIndex"] for k, d in zip(kinds, datas, strict=True) if k == "generatedrule"}
    assert suggested == set(range(len(suggested)))
    assert generated == set(range(len(generated)))
    summary = datas[-1]
    assert summary["matchCount"] == len(matches)
    assert summary["suggestedRuleCount"] == len(suggested)
    assert summary["generatedRuleCount"] == len(generated)
    assert len({e.attributes["ce-id"] for e in events}) == len(events)


# --- strategies -------------------------------------------------------------------------------------------------------

HUGE_NUMBERS = (10**30, -(10**30), 2**53, 2**53 - 1, 2**53 + 1, 2**63, -(2**63), 2**64, MAX_ID, MAX_ID + 1, 0, -1)
ODD_TEXT = ("\x00", "\u202e", "\u200f", "\ufeff", "\u2028", "ｄｅｍｏ", "١٢٣", "１２３", "😀", "Pompe Ø ∆", "\x1b[31m")
texts = st.one_of(
    st.text(max_size=20),
    st.sampled_from(ODD_TEXT),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "\u202e", "😀", "\x00"]), st.sampled_from([1_000, 100_000])),
)
short_texts = st.text(max_size=8) | st.sampled_from(ODD_TEXT)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(short_texts, inner, max_size=4),
    max_leaves=8,
)
HOSTILE_IDS = (
    *("", " 1", "1 ", "+1", "-1", "1.0", "1e3", "0x10", "1_000", "١٢٣", "１２３", "\u00b9", "1\n", "1\x00"),
    *("1/../2", "1?x=y", "1#x", "%31", "1%2F..%2F2", "latest/../1", "LATEST", "latest ", "../latest", "1;2"),
)
HOSTILE_PROJECTS = (
    *("DEMO", "demo ", " demo", "../../x", "demo/../other", "demo%2F..", "demo?x=1", "demo#", "", "ｄｅｍｏ"),
    *("\u202edemo", "demo\x00", "demo\n", "http://127.0.0.2", "//127.0.0.2/x", "demo,other"),
)
id_like = st.one_of(
    st.integers(1, MAX_ID),
    st.integers(1, MAX_ID).map(str),
    st.just("latest"),
    st.sampled_from(HUGE_NUMBERS),
    st.sampled_from(HUGE_NUMBERS).map(str),
    st.sampled_from(HOSTILE_IDS),
    st.floats(),
    st.booleans(),
    st.none(),
    json_values,
)
project_like = st.one_of(st.sampled_from(ALLOWED), st.sampled_from(HOSTILE_PROJECTS), st.none(), texts, json_values)


@st.composite
def trigger_fields(draw: st.DrawFn) -> dict[str, Any]:
    """A trigger object: each known field usually present and often hostile, plus unknown fields."""
    fields: dict[str, Any] = draw(st.dictionaries(short_texts, json_values, max_size=3))
    for name, strategy in (("pipelineId", id_like), ("runId", id_like), ("project", project_like)):
        if draw(st.integers(0, 4)):
            fields[name] = draw(strategy)
    return fields


valid_ids = st.integers(1, MAX_ID) | st.integers(1, MAX_ID).map(str) | st.sampled_from([1, MAX_ID, str(MAX_ID)])
EXTRA_FIELDS = ("url", "host", "cdfUrl", "baseUrl", "Authorization", "headers", "token", "access_token", "path")


@st.composite
def near_valid_fields(draw: st.DrawFn) -> dict[str, Any]:
    """A valid trigger plus fields naming URLs, hosts and tokens, with at most one known field spoiled."""
    fields: dict[str, Any] = {"pipelineId": draw(valid_ids), "runId": draw(valid_ids | st.just("latest"))}
    project = draw(st.sampled_from([*ALLOWED, None, "absent"]))
    if project != "absent":
        fields["project"] = project
    for name in draw(st.lists(st.sampled_from(EXTRA_FIELDS), max_size=3, unique=True)):
        fields[name] = draw(st.sampled_from(["http://127.0.0.2:1/x", "Bearer forged", "127.0.0.2"]) | json_values)
    if draw(st.booleans()):
        spoiled = draw(st.sampled_from(["pipelineId", "runId", "project"]))
        fields[spoiled] = draw(id_like if spoiled != "project" else project_like)
    return fields


def _dumps(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


DEEP = b"[" * 10_000 + b"]" * 10_000
SPECIAL_BODIES = (
    b"",
    b"   ",
    b"\n\t",
    b"null",
    b"[]",
    b'"{}"',
    DEEP,
    b'{"pipelineId":' + DEEP + b',"runId":1}',
    b'{"pipelineId": NaN, "runId": 1}',
    b'{"pipelineId": Infinity, "runId": -Infinity}',
    b'{"pipelineId": 1e400, "runId": 1}',
    b'{"pipelineId": ' + b"9" * 5000 + b', "runId": 1}',  # beyond Python's int digit limit
    b'{"pipelineId": 1.0, "runId": 2}',
    b'{"pipelineId": "\\ud800", "runId": 1}',
    b'{"pipelineId": 1, "runId": 2, "project": "\\udfff"}',
    b'{"pipelineId": 1, "runId": 2, "project": "demo\\u0000"}',
    '{"pipelineId": 1, "runId": 2, "project": "\u202edemo"}'.encode(),
    b'\xef\xbb\xbf{"pipelineId": 1, "runId": 2}',
    b'{"pipelineId": 1, "runId": 2}\x00',
    b'{"pipelineId": 1, "runId": 2} {}',
    b'{"pipelineId": 1, "runId": 2, "pad": "' + b"x" * 100_000 + b'"}',
    b'{"pipelineId": "' + b"1" * 100_000 + b'", "runId": 2}',
    b'{"pipelineId": 1, "pipelineId": "x", "runId": 2}',
    b'{"pipelineId": 1, "runId": "latest"}',
    b"\xff\xfe{\x00",
    b'{"pipelineId": 1, "runId": 2, "project": "\xed\xa0\x80"}',
)
trigger_bodies = st.one_of(
    st.builds(_dumps, trigger_fields(), st.booleans()),
    st.builds(_dumps, near_valid_fields(), st.booleans()),
    st.builds(_dumps, json_values, st.booleans()),
    st.binary(max_size=64),
    st.sampled_from(SPECIAL_BODIES),
)
attribute_values = st.one_of(
    st.integers(1, MAX_ID).map(str),
    st.sampled_from(["latest", *ALLOWED, *HOSTILE_IDS, *HOSTILE_PROJECTS]),
    texts,
)
string_attributes = st.one_of(
    st.dictionaries(
        st.sampled_from(["pipelineId", "runId", "project"]) | st.text(min_size=1, max_size=8),
        attribute_values,
        max_size=4,
    ),
    st.fixed_dictionaries(
        {"pipelineId": valid_ids.map(str), "runId": valid_ids.map(str) | st.just("latest")},
        optional={"project": st.sampled_from(ALLOWED) | attribute_values, "url": attribute_values},
    ),
)
any_attributes = st.one_of(
    st.dictionaries(st.sampled_from(["pipelineId", "runId", "project"]) | short_texts, id_like, max_size=4),
    string_attributes,
    json_values,
)
publish_times = st.one_of(
    st.sampled_from(["2024-10-29T12:19:06.123Z", "2024-10-29T12:19:06.123456789Z", "2024-13-45T99:00:00Z", ""]),
    st.none(),
    texts,
    json_values,
)


@st.composite
def pubsub_messages(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """A well-formed Pub/Sub message around a fuzzed body and attributes; also returns the raw body."""
    raw = draw(trigger_bodies)
    message = {
        "data": base64.b64encode(raw).decode(),
        "attributes": draw(any_attributes),
        "messageId": draw(st.integers(1, 10**16).map(str) | st.sampled_from(["", "0"]) | json_values),
        "publishTime": draw(publish_times),
    }
    return message, raw


envelopes = st.one_of(
    json_values,
    st.fixed_dictionaries({"message": json_values}),
    st.fixed_dictionaries(
        {},
        optional={
            "data": json_values | st.binary(max_size=32).map(lambda b: base64.b64encode(b).decode()),
            "attributes": any_attributes,
            "messageId": json_values,
            "publishTime": publish_times,
        },
    ).map(lambda message: {"message": message, "subscription": SUBSCRIPTION}),
)


# --- the trigger, pure --------------------------------------------------------------------------------------------


def parse(data: Any) -> Trigger | InvalidTrigger:
    """``parse_event`` as the deployment calls it; the outcome, checked for what any outcome must satisfy."""
    bad: InvalidTrigger | None = None
    try:
        trigger = parse_event("event-1", data, default_project="demo", allowed=ALLOWED)
    except InvalidTrigger as exc:
        bad = exc
    if bad is not None:
        assert bad.project is None or bad.project in ALLOWED
        assert bad.pipeline_id is None or is_id(bad.pipeline_id)
        assert bad.run_id is None or is_id(bad.run_id)
        assert isinstance(bad.message_id, str)
        assert bad.message_id
        message = str(bad)
        assert len(message) <= 512
        message.encode("utf-8")  # publishable: no lone surrogates echoed
        return bad
    assert trigger.project in ALLOWED
    assert is_id(trigger.pipeline_id)
    assert is_id(trigger.run_id) or trigger.run_id == "latest"
    assert isinstance(trigger.message_id, str)
    return trigger


def _reference_id(value: Any) -> int | None:
    if type(value) is int:
        return value if 1 <= value <= MAX_ID else None
    # Decimal strings: ASCII digits only; MAX_ID has 16 digits, longer strings are out of range as written.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        return int(value) if 1 <= int(value) <= MAX_ID else None
    return None


def reference_trigger(raw: bytes, attributes: Any) -> tuple[str, int, int | str] | None:
    """What section 2 says the trigger names, written independently of ``handlers.core.trigger``: None if invalid."""
    if len(raw) > 1_000_000:
        return None
    if not raw.strip():
        fields = attributes if isinstance(attributes, Mapping) else {}
    else:
        try:
            fields = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            return None
        if not isinstance(fields, dict):
            return None
    pipeline = _reference_id(fields.get("pipelineId"))
    run = "latest" if fields.get("runId") == "latest" else _reference_id(fields.get("runId"))
    project = fields.get("project")
    project = "demo" if project is None else project
    if pipeline is None or run is None or not isinstance(project, str) or project not in ALLOWED:
        return None
    return project, pipeline, run


@PURE
@given(pubsub_messages())
def test_fuzz_trigger_message_is_valid_or_bad_trigger(message_and_raw: tuple[dict[str, Any], bytes]) -> None:
    """Any Pub/Sub message gives a Trigger with ids in 1..2**53-1 and an allowed project, or InvalidTrigger."""
    message, raw = message_and_raw
    outcome = parse({"message": message, "subscription": SUBSCRIPTION})
    expected = reference_trigger(raw, message["attributes"] or {})
    label(f"outcome: {type(outcome).__name__}")
    if isinstance(outcome, Trigger):
        assert (outcome.project, outcome.pipeline_id, outcome.run_id) == expected
    else:
        assert expected is None, outcome


@PURE
@given(envelopes)
def test_fuzz_trigger_envelope_is_valid_or_bad_trigger(data: Any) -> None:
    """Whatever functions-framework hands over as event data, parse_event raises nothing but InvalidTrigger."""
    parse(data)


# --- the trigger, end to end ---------------------------------------------------------------------------------------

RUN_PATH = re.compile(
    r"/api/v1/projects/(demo|other)/context/entitymatching/pipelines/[1-9][0-9]{0,15}/runs/([1-9][0-9]{0,15}|latest)"
)


def drain_run(pubsub: PubSub, sub: str, at_least: int, keep: Any = None) -> list[Received]:
    """Everything on ``sub`` (waiting for ``at_least``), optionally only what ``keep`` accepts."""
    got = pubsub.drain(sub, at_least=at_least, seconds=30)
    return [m for m in got if keep is None or keep(m)]


@END_TO_END
@given(
    body=trigger_bodies,
    attributes=string_attributes,
    mode=st.sampled_from(["binary", "structured", "push"]),
)
def test_fuzz_trigger_end_to_end_invalid_is_acked_once_without_cdf(
    client: Any,
    sim: CdfSimulator,
    pubsub: PubSub,
    topics: Topics,
    body: bytes,
    attributes: dict[str, str],
    mode: str,
) -> None:
    """An invalid trigger gets 200, one run.failed invalid_trigger and no request; a valid one only exact paths."""
    sim.requests.clear()
    message = pubsub_message(raw=body, attributes=attributes)
    expected = parse({"message": message, "subscription": SUBSCRIPTION})
    label(f"outcome: {type(expected).__name__}")
    response = deliver(client, message, mode)
    assert response.status_code == 200
    errors = drain_run(pubsub, topics.errors_sub, 1)
    assert len(errors) == 1, [e.attributes for e in errors]
    data = assert_contract_event(errors[0].attributes, errors[0].raw, sim.url)
    if isinstance(expected, InvalidTrigger):
        assert sim.requests == []
        assert errors[0].attributes["ce-id"] == f"invalid-trigger/{message['messageId']}"
        assert data["reason"] == "invalid_trigger"
        assert data["errorMessage"] == str(expected)
        assert (data["project"], data["pipelineId"], data["runId"]) == (
            expected.project,
            expected.pipeline_id,
            expected.run_id,
        )
    else:  # nothing is scripted: CDF answers 404 (or 403 for the project the simulator does not serve)
        assert data["reason"] in ("run_not_found", "access_denied")
        assert (data["project"], data["pipelineId"]) == (expected.project, expected.pipeline_id)
        cdf = sim.cdf_requests()
        assert cdf
        assert all(RUN_PATH.fullmatch(r.path) and r.method == "GET" for r in cdf), [r.path for r in cdf]
        assert all(r.path == "/oauth2/token" for r in sim.requests if r not in cdf)
    assert drain_run(pubsub, topics.events_sub, 0) == []


# --- results bodies, pure ------------------------------------------------------------------------------------------

CDF_URL = "http://127.0.0.1:9"
DECIDED_MS = 1_730_300_000_000
ARRAYS = ("matches", "suggestedRules", "generatedRules")
KNOWN_TOP = {"status", "jobId", "statusTime", "createdTime", "startTime", "errorMessage", "errors"}
KNOWN_TOP |= set(ARRAYS)
# Names a key added inside the body is drawn from too: the worker's own (a rule must not let CDF's win), a generated
# rule's definition, a rule match's fields.
NAMED = tuple(sorted(WORKER_RULE_FIELDS | RULE_DEFINITION_FIELDS | RULE_MATCH_FIELDS | {"conflicts", "overlaps"}))
RULE_KINDS = {"suggestedRules": "suggestedrule", "generatedRules": "generatedrule"}
ODD_VALUES = (None, "", "x", 0, -1, 1.5, True, False, [], {}, [None], {"id": None}, float("nan"), float("inf"))
BYTE_TOKENS = (
    *(b"NaN", b"Infinity", b"-Infinity", b"nan", b"1e400", b"-", b"0", b"null", b"true"),
    *(b"\x00", b"\xff", b"\xc3", b"}", b"]", b"{", b"[", b",", b":", b'"', b"\\", b"\\ud800", b"\\u0000"),
    *(b"\\u202e", b"\\ud83d\\ude00", b"\xef\xbb\xbf", b" ", b"\n"),
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (dict keys and list indices), the root excluded."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found.append((*path, key))
        found.extend(_paths(item, (*path, key)))
    return found


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


@st.composite
def mutated_runs(
    draw: st.DrawFn, statuses: tuple[str, ...] = ("Completed", "Completed", "Failed", "Running"), max_matches: int = 4
) -> dict[str, Any]:
    """``make_run``'s documented body, then up to four mutations (drop, retype, replace, add keys), maybe reordered."""
    body = make_run(
        draw(st.integers(0, max_matches)),
        draw(st.integers(0, 2)),
        draw(st.integers(0, 2)),
        status=draw(st.sampled_from(statuses)),
        job_id=draw(st.integers(1, MAX_ID) | st.sampled_from(HUGE_NUMBERS)),
        errors=draw(st.lists(texts, max_size=3)),
        error_message=draw(st.none() | texts),
        rule_size=draw(st.integers(1, 3)),
    )
    body["statusTime"] = draw(st.none() | st.integers(*SAFE_STATUS_TIME) | st.sampled_from(SAFE_STATUS_TIME))
    for _ in range(draw(st.integers(0, 4))):
        paths = _paths(body)
        if not paths:
            break
        # Half the time one of the fields the contract names (run fields, items and their keys), else anywhere.
        named = [p for p in paths if len(p) == 1 or (p[0] in ARRAYS and len(p) <= 3)]
        path = draw(st.sampled_from(named) | st.sampled_from(paths))
        parent, key = _at(body, path[:-1]), path[-1]
        action = draw(st.sampled_from(["drop", "retype", "replace", "add"]))
        if action == "drop":
            del parent[key]
        elif action == "retype":
            parent[key] = draw(st.sampled_from(ODD_VALUES))
        elif action == "replace":
            parent[key] = draw(json_values)
        elif isinstance(parent, dict):
            names = short_texts.filter(lambda k: k not in KNOWN_TOP)
            parent[draw(names | st.sampled_from(NAMED) if len(path) > 1 else names)] = draw(json_values)
        else:
            parent.append(draw(json_values))
    if draw(st.integers(0, 3)) == 0:  # CDF documents the run's fields first; an answer may not keep to it
        body = {key: body[key] for key in draw(st.permutations(list(body)))}
    return body


@st.composite
def results_bodies(draw: st.DrawFn, runs: st.SearchStrategy[dict[str, Any]] | None = None) -> bytes:
    """A mutated run serialized (NaN tokens included), then maybe truncated or with a stray token inserted."""
    raw = json.dumps(draw(runs if runs is not None else mutated_runs()), ensure_ascii=draw(st.booleans())).encode()
    action = draw(st.sampled_from(["keep", "keep", "keep", "truncate", "insert", "raw"]))
    if action == "truncate" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif action == "insert":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from(BYTE_TOKENS)) + raw[at:]
    elif action == "raw":
        raw = draw(st.binary(max_size=64) | st.sampled_from([b"", b"{}", b"[]", b"null", b'{"status": "Completed"}']))
    return raw


def split(raw: bytes, cuts: list[int]) -> list[bytes]:
    """``raw`` in chunks cut at ``cuts``, as a body arrives over the network."""
    bounds = sorted({0, len(raw), *(c % (len(raw) + 1) for c in cuts)})
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


def relay_body(ref: RunRef, chunks: list[bytes]) -> list[Event] | None:
    """What ``Relay._step`` makes of one 200 answer: the events it publishes, or None while unfinished."""
    body = RunBody(chunks)
    summary = summary_of(body.header())
    if not summary.finished:
        return None
    if summary.status == "Failed":
        summary = summary_of(body.drain())
        return [failed_event(ref, "run_failed", summary.errorMessage, summary, DECIDED_MS)]
    events = list(stream_events(ref, summary, body))
    final = summary_of(body.fields)
    n = body.counts
    return [*events, completed_event(ref, final, (n["matches"], n["suggestedRules"], n["generatedRules"]))]


@PURE
@given(raw=results_bodies(), cuts=st.lists(st.integers(0, 10**6), max_size=6))
def test_fuzz_results_body_gives_contract_events_or_malformed(raw: bytes, cuts: list[int]) -> None:
    """Any 200 body gives contract-valid events, or raises only MalformedResponse / InvalidResponse."""
    ref = RunRef(CDF_URL, "demo", 123, 456)
    try:
        events = relay_body(ref, split(raw, cuts))
    except (MalformedResponse, InvalidResponse) as exc:
        label(f"outcome: {type(exc).__name__}")
        return
    label(f"outcome: {'unfinished' if events is None else events[-1].type.removeprefix(TYPE_PREFIX)}")
    if events is None:
        return
    for event in events:
        assert_contract_event(event.attributes, event.data, CDF_URL)
    if events[-1].type == TYPE_PREFIX + "run.failed":
        assert len(events) == 1
        assert json.loads(events[0].data)["reason"] == "run_failed"
        return
    assert_complete_run(events)
    # Differential check: what CDF returned is passed on as it was (json.loads is the reference reader).
    parsed = json.loads(raw)
    datas = [json.loads(e.data) for e in events if e.type == TYPE_PREFIX + "match"]
    for data in datas:
        cdf = parsed["matches"][data["matchIndex"]]
        assert (data["source"], data["target"], data["score"]) == (
            cdf.get("source", {}),
            cdf.get("target", {}),
            cdf.get("score"),
        )
    assert json.loads(events[-1].data)["errors"] == (parsed.get("errors") or [])  # "[] where CDF gave none"
    for array, kind in RULE_KINDS.items():  # and a rule is CDF's rule, every field of it and of its matches
        for index, rule in enumerate(parsed.get(array) or []):
            subject = f"{kind}/{index}"
            datas = [json.loads(e.data) for e in events if e.attributes["ce-subject"].split("/part/")[0] == subject]
            assert rule_problems(kind, datas, rule) == []
            label(f"rule with {'a definition' if set(rule) >= RULE_DEFINITION_FIELDS else 'no definition'}")
            if set(rule) & WORKER_RULE_FIELDS:
                label("rule with a field named like the worker's")


@PURE
@given(raw=results_bodies(), cuts=st.lists(st.integers(0, 10**6), max_size=6))
def test_fuzz_results_body_chunking_does_not_change_events(raw: bytes, cuts: list[int]) -> None:
    """However the body is cut into chunks, the events (or the error class) are the same as in one piece."""
    ref = RunRef(CDF_URL, "demo", 123, 456)

    def outcome(chunks: list[bytes]) -> Any:
        try:
            events = relay_body(ref, chunks)
        except (MalformedResponse, InvalidResponse) as exc:
            return type(exc)
        return None if events is None else [(e.attributes, e.data) for e in events]

    assert outcome(split(raw, cuts)) == outcome([raw])


@st.composite
def rule_runs(draw: st.DrawFn) -> dict[str, Any]:
    """A run whose rules (both of CDF's shapes of generated rule) and rule matches gain fields, named or not."""
    body = make_run(draw(st.integers(1, 4)), draw(st.integers(0, 2)), draw(st.integers(1, 3)), rule_size=3)
    keys = st.sampled_from(NAMED) | short_texts
    for rule in body["suggestedRules"] + body["generatedRules"]:
        for _ in range(draw(st.integers(0, 3))):
            rule[draw(keys.filter(lambda k: k != "matches"))] = draw(json_values)
        for match in rule["matches"]:
            if draw(st.booleans()):
                match[draw(keys)] = draw(json_values)
    return body


@PURE
@given(body=rule_runs(), max_bytes=st.sampled_from([700, 1500, 4000, 9_500_000]))
def test_fuzz_rules_carry_every_field_cdf_gave(body: dict[str, Any], max_bytes: int) -> None:
    """Whatever fields CDF adds to a rule or its matches, the rule's events (whole or parts) carry them as given."""
    ref = RunRef(CDF_URL, "demo", 123, 456)
    run = RunBody([json.dumps(body).encode()])
    summary = summary_of(run.header())
    try:
        events = list(stream_events(ref, summary, run, max_bytes))
    except (MalformedResponse, InvalidResponse) as exc:
        label(f"outcome: {type(exc).__name__}")
        return
    for event in events:
        assert len(event.data) <= max_bytes
        assert_contract_event(event.attributes, event.data, CDF_URL)
    for array, kind in RULE_KINDS.items():
        for index, rule in enumerate(body[array]):
            subject = f"{kind}/{index}"
            datas = [json.loads(e.data) for e in events if e.attributes["ce-subject"].split("/part/")[0] == subject]
            assert rule_problems(kind, datas, rule) == []
            label(f"{kind} in {'parts' if len(datas) > 1 else 'one event'}")
            if set(rule) & WORKER_RULE_FIELDS:
                label("a rule with a field named like the worker's")


# --- results bodies, end to end ------------------------------------------------------------------------------------

RUN_IDS = itertools.count(10_000)


@pytest.fixture
def short_budget_client(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The function with a 0.3 s poll budget, so an unfinished run hands back at once."""
    monkeypatch.setenv("POLL_BUDGET_S", "0.3")
    return load_app().test_client()


def _by_id(messages: list[Received]) -> dict[str, tuple[dict[str, str], bytes]]:
    return {m.attributes["ce-id"]: (m.attributes, m.raw) for m in messages}


@END_TO_END
@given(raw=results_bodies(mutated_runs(statuses=("Completed", "Completed", "Failed"), max_matches=3)))
def test_fuzz_results_end_to_end_never_500_and_events_are_valid(
    short_budget_client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, raw: bytes
) -> None:
    """Any body CDF answers: 200 (503 only for an unfinished run), contract-valid events as the pure stages say."""
    run_id = next(RUN_IDS)
    sim.requests.clear()
    sim.set_run(7, run_id, [Step.raw(200, raw)])
    ref = RunRef(sim.url, "demo", 7, run_id)
    try:
        expected: Any = relay_body(ref, [raw])
    except (MalformedResponse, InvalidResponse) as exc:
        expected = exc
    label(f"outcome: {type(expected).__name__ if not isinstance(expected, list) else expected[-1].type}")

    def this_run(m: Received) -> bool:
        return m.attributes.get("ce-runid") == str(run_id)

    response = deliver(short_budget_client, pubsub_message({"pipelineId": 7, "runId": run_id}))
    if expected is None:
        assert response.status_code == 503
        assert drain_run(pubsub, topics.errors_sub, 0, this_run) == []
        assert drain_run(pubsub, topics.events_sub, 0, this_run) == []
        return
    assert response.status_code == 200
    if isinstance(expected, Exception):
        errors = drain_run(pubsub, topics.errors_sub, 1, this_run)
        assert [e.attributes["ce-reason"] for e in errors] == ["invalid_response"]
        assert_contract_event(errors[0].attributes, errors[0].raw, sim.url)
        if isinstance(expected, MalformedResponse):
            assert len([r for r in sim.cdf_requests() if r.path.endswith(f"/runs/{run_id}")]) == 4
        for event in drain_run(pubsub, topics.events_sub, 0, this_run):  # parts published before the bad item
            assert_contract_event(event.attributes, event.raw, sim.url)
            assert event.attributes["ce-type"] != TYPE_PREFIX + "run.completed"
        return
    sub = topics.errors_sub if expected[-1].type == TYPE_PREFIX + "run.failed" else topics.events_sub
    got = _by_id(drain_run(pubsub, sub, len(expected), this_run))
    for event in expected:
        attributes, data = got.pop(event.attributes["ce-id"])
        assert_contract_event(attributes, data, sim.url)
        assert data == event.data
        if event.type != TYPE_PREFIX + "run.failed" or json.loads(data)["statusTime"] is not None:
            assert attributes == event.attributes
    assert got == {}


def _malformed(raw: bytes) -> bytes:
    """``raw`` if the pure stages call it malformed, else a body that certainly is."""
    try:
        relay_body(RunRef(CDF_URL, "demo", 7, 1), [raw])
    except MalformedResponse:
        return raw
    except InvalidResponse:
        pass
    return b'{"status": '


@settings(END_TO_END, max_examples=15)
@given(bodies=st.lists(results_bodies(), min_size=4, max_size=4))
def test_fuzz_results_end_to_end_malformed_sequence_ends_in_invalid_response(
    short_budget_client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, bodies: list[bytes]
) -> None:
    """Four different malformed answers in a row end in one run.failed invalid_response, 200, after four polls."""
    bodies = [_malformed(raw) for raw in bodies]
    run_id = next(RUN_IDS)
    sim.requests.clear()
    sim.set_run(7, run_id, [Step.raw(200, raw) for raw in bodies])

    def this_run(m: Received) -> bool:
        return m.attributes.get("ce-runid") == str(run_id)

    response = deliver(short_budget_client, pubsub_message({"pipelineId": 7, "runId": run_id}))
    assert response.status_code == 200
    errors = drain_run(pubsub, topics.errors_sub, 1, this_run)
    assert [e.attributes["ce-reason"] for e in errors] == ["invalid_response"]
    assert_contract_event(errors[0].attributes, errors[0].raw, sim.url)
    assert len([r for r in sim.cdf_requests() if r.path.endswith(f"/runs/{run_id}")]) == 4
    for event in drain_run(pubsub, topics.events_sub, 0, this_run):
        assert_contract_event(event.attributes, event.raw, sim.url)
        assert event.attributes["ce-type"] != TYPE_PREFIX + "run.completed"


# --- bugs the fuzzing found, now fixed: kept as regression tests ------------------------------------------------

REF = RunRef(CDF_URL, "demo", 123, 456)


def test_fuzz_results_lone_low_surrogate_is_malformed() -> None:
    """A body with a lone low-surrogate escape ("\\udfff") is a body that is not JSON: MalformedResponse."""
    raw = b'{"status": "Failed", "jobId": 456, "statusTime": 1730204406000, "errorMessage": "\\udfff"}'
    with pytest.raises(MalformedResponse):
        relay_body(REF, [raw])


@pytest.mark.parametrize("status_time", [10**17, -(10**15), 2**63 - 1], ids=["1e17", "-1e15", "int64-max"])
def test_fuzz_results_status_time_out_of_range_is_malformed(status_time: int) -> None:
    """A statusTime no date can carry is not the documented shape: MalformedResponse, not a crash."""
    body = make_run(1)
    body["statusTime"] = status_time
    with pytest.raises((MalformedResponse, InvalidResponse)):
        relay_body(REF, [json.dumps(body).encode()])


def test_fuzz_out_of_range_status_time_never_becomes_the_last_answer() -> None:
    """An answer whose statusTime no date can carry is malformed, so a later run.failed never inherits it."""
    with pytest.raises(MalformedResponse):
        summary_of({"status": "Running", "statusTime": -(10**15), "jobId": 456})


@pytest.mark.parametrize("status_time", [-62135596799000, 9462588423234, 253402300799999])
def test_fuzz_ce_time_is_rfc3339_with_exact_milliseconds(status_time: int) -> None:
    """ce-time is the statusTime in RFC 3339 with a four-digit year and its exact millisecond."""
    assert rfc3339(status_time) == ce_time(status_time)


def test_fuzz_failed_event_carries_cdf_text_with_lone_surrogate() -> None:
    """A run.failed whose errorMessage (CDF's text) holds a lone surrogate is still published."""
    event = failed_event(REF, "invalid_request", "CDF rejected the request (HTTP 400): a\ud800b", None, DECIDED_MS)
    assert_contract_event(event.attributes, event.data, CDF_URL)


@pytest.mark.parametrize(
    "step",
    [
        pytest.param(Step.raw(400, b'{"error": {"code": 400, "message": "a\\ud800b"}}'), id="4xx-lone-surrogate"),
        pytest.param(Step.raw(200, b'{"status": "Failed", "jobId": 456, "errorMessage": "\\udfff"}'), id="low-surr"),
        pytest.param(Step.run({**make_run(1), "statusTime": 10**17}), id="status-time-1e17"),
    ],
)
def test_fuzz_relay_odd_cdf_text_and_times_are_acked(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, step: Step
) -> None:
    """Odd text or times in CDF's answer end in a run.failed event and 200, never in a 500."""
    sim.set_run(1, 456, [step])
    response = deliver(client, pubsub_message({"pipelineId": 1, "runId": 456}))
    assert response.status_code == 200
    errors = pubsub.drain(topics.errors_sub, at_least=1)
    assert [e.attributes["ce-reason"] for e in errors] in (["invalid_request"], ["invalid_response"])
