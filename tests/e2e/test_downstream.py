"""``examples/downstream``: matchrelay and the downstream function chained through the Pub/Sub emulator's push.

Both run as functions-framework processes; Google's Firestore emulator holds
what the downstream records. The unit tests read the function's pieces (the
unwrap, the threshold, the document ids) in this process.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import CdfSimulator, Step, make_run
from sim.emulator import free_port
from sim.firestore_emulator import FirestoreEmulator, FirestoreEmulatorError
from sim.framework import StartError, serve
from tests.conftest import GCP_PROJECT, ROOT, PubSub, Topics, binary_event, function_process, pubsub_message, wait_for

DOWNSTREAM = ROOT / "examples" / "downstream"
MIN_SCORE = 0.8
PREFIX = "com.cognite.entitymatching."
# A Firestore timeout for tests where it stays up: 2 s was once not enough for a busy emulator.
RELAXED_S = 60
ACKED = {"stored", "below-threshold", "duplicate", "summary", "ignored", "malformed"}


def load_downstream() -> ModuleType:
    """``examples/downstream/main.py`` under a name of its own (the root's ``main`` may be loaded too)."""
    spec = importlib.util.spec_from_file_location("downstream_main", DOWNSTREAM / "main.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


downstream = load_downstream()


# --- fixtures and helpers --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirestoreEmulator]:
    emulator = FirestoreEmulator()
    try:
        emulator.start(tmp_path_factory.mktemp("firestore") / "firestore.log")
    except FirestoreEmulatorError as exc:  # fail loudly, never skip: these tests need the real thing
        pytest.fail(str(exc), pytrace=False)
    yield emulator
    emulator.stop()


@pytest.fixture
def fs_project() -> str:
    """A Firestore project of the test's own: the emulator keeps projects apart, so tests share nothing."""
    return f"downstream-{uuid.uuid4().hex[:10]}"


def firestore_client(host: str, project: str) -> Any:
    """A client of the emulator at ``host`` (the library reads the variable when the client is built)."""
    from google.cloud import firestore

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", host)
        return firestore.Client(project=project)


@contextlib.contextmanager
def downstream_process(env: dict[str, str], log: Path, port: int | None = None) -> Iterator[str]:
    """functions-framework serving the example from its own folder, as deployed; yields its URL."""
    with contextlib.ExitStack() as stack:
        try:
            _, url = stack.enter_context(serve(DOWNSTREAM, "on_event", env, log, port))
        except StartError as exc:
            pytest.fail(f"the downstream function: {exc}")
        yield url


def downstream_env(firestore_host: str, project: str, timeout_s: float = 2) -> dict[str, str]:
    """The function's environment; the short default timeout hands back quickly where Firestore is meant to be down."""
    return os.environ | {
        "FIRESTORE_EMULATOR_HOST": firestore_host,
        "GOOGLE_CLOUD_PROJECT": project,
        "MIN_SCORE": str(MIN_SCORE),
        "FIRESTORE_TIMEOUT_S": str(timeout_s),
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": "",
    }


def relay_env(env: dict[str, str]) -> dict[str, str]:
    return os.environ | env | {"LOG_LEVEL": "WARNING"}


def push_to(pubsub: PubSub, topic: str, endpoint: str) -> str:
    """A push subscription on ``topic`` delivering to ``endpoint``, as the README's deployment has."""
    name: str = pubsub.subscriber.subscription_path(GCP_PROJECT, f"downstream-{uuid.uuid4().hex[:12]}")
    pubsub.subscriber.create_subscription(
        request={"name": name, "topic": topic, "push_config": {"push_endpoint": endpoint}, "ack_deadline_seconds": 20}
    )
    return name


def trigger(url: str, run_id: int) -> int:
    """Ask matchrelay (its process at ``url``) to relay run ``run_id`` of pipeline 1; its HTTP status."""
    headers, body = binary_event(pubsub_message({"pipelineId": 1, "runId": run_id}))
    return httpx.post(url, headers=headers, content=body, timeout=120).status_code


@dataclass
class Published:
    message_id: str
    attributes: dict[str, str]
    data: bytes


def pull_all(pubsub: PubSub, subscription: str, at_least: int) -> list[Published]:
    """Every message on ``subscription`` (at least ``at_least``), acked: what matchrelay published."""
    got: list[Published] = []
    deadline = time.monotonic() + 60
    while not (empty_twice(pubsub, subscription, got) and len(got) >= at_least):
        assert time.monotonic() < deadline, f"only {len(got)} of {at_least} messages published"
    return got


def empty_twice(pubsub: PubSub, subscription: str, got: list[Published]) -> bool:
    """Pull once into ``got``; True when two pulls in a row found nothing."""
    for _ in range(2):
        response = pubsub.subscriber.pull(
            request={"subscription": subscription, "max_messages": 1000, "return_immediately": True}, timeout=30
        )
        if response.received_messages:
            got += [
                Published(m.message.message_id, dict(m.message.attributes), m.message.data)
                for m in response.received_messages
            ]
            pubsub.subscriber.acknowledge(
                request={"subscription": subscription, "ack_ids": [m.ack_id for m in response.received_messages]}
            )
            return False
        time.sleep(0.05)
    return True


def push_request(message: Published, message_id: str | None = None) -> tuple[dict[str, str], bytes]:
    """A raw Pub/Sub push request for ``message``, as a push subscription sends it."""
    body = {
        "message": {
            "data": base64.b64encode(message.data).decode(),
            "attributes": message.attributes,
            "messageId": message_id or message.message_id,
            "publishTime": "2024-10-29T12:20:06.000Z",
        },
        "subscription": f"projects/{GCP_PROJECT}/subscriptions/by-hand",
    }
    return {"Content-Type": "application/json"}, json.dumps(body).encode()


def redeliver(url: str, messages: list[Published]) -> list[int]:
    """Every message once more, straight to the function and eight at a time: duplicates arriving together."""
    answers: list[int] = []
    lock = threading.Lock()

    def deliver(chunk: list[Published]) -> None:
        with httpx.Client(timeout=60) as client:
            for message in chunk:
                headers, body = push_request(message, f"dup-{message.message_id}")
                status = client.post(url, headers=headers, content=body).status_code
                with lock:
                    answers.append(status)

    threads = [threading.Thread(target=deliver, args=(messages[k::8],)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return answers


def log_lines(log: Path) -> list[dict[str, Any]]:
    """The downstream's structured log lines (gunicorn's own lines are not JSON and are skipped)."""
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "outcome" in record:
                lines.append(record)
    return lines


def acked_ids(log: Path) -> set[str]:
    return {str(line["messageId"]) for line in log_lines(log) if line["outcome"] in ACKED}


def outcomes(log: Path, outcome: str) -> list[dict[str, Any]]:
    return [line for line in log_lines(log) if line["outcome"] == outcome]


def stored(client: Any, collection: str) -> dict[str, dict[str, Any]]:
    """A collection's documents, by decoded id."""
    return {urllib.parse.unquote(doc.id): doc.to_dict() for doc in client.collection(collection).stream(timeout=30)}


def seen_count(client: Any, run: str) -> int:
    seen = client.collection("matchrelay_runs").document(downstream.doc_id(run)).collection("seen")
    return int(seen.count().get(timeout=30)[0][0].value)


def kept_ids(body: dict[str, Any], run_id: int) -> set[str]:
    return {f"demo/1/{run_id}/match/{i}" for i, m in enumerate(body["matches"]) if m["score"] >= MIN_SCORE}


def check_recorded(client: Any, body: dict[str, Any], run_id: int) -> None:
    """Firestore holds each kept match of the run once, every match seen, and one completion."""
    run = f"demo/1/{run_id}"
    matches = stored(client, "matchrelay_matches")
    assert set(matches) == kept_ids(body, run_id)
    for ce_id, document in matches.items():
        match = body["matches"][int(ce_id.rsplit("/", 1)[1])]
        assert (document["ceId"], document["run"]) == (ce_id, run)
        assert (document["score"], document["matchType"]) == (match["score"], match["matchType"])
        assert document["targetExternalId"] == match["target"]["externalId"]
    assert seen_count(client, run) == len(body["matches"])
    completions = stored(client, "matchrelay_completions")
    assert list(completions) == [run]
    assert completions[run]["matchCount"] == len(body["matches"])
    assert completions[run]["keptCount"] == len(kept_ids(body, run_id))


def matchrelay_event(kind: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    """Eventarc's ``messagePublished`` data carrying one matchrelay event, as the attributes have it."""
    attributes = {
        "ce-specversion": "1.0",
        "ce-type": PREFIX + kind,
        "ce-source": "https://example.cognitedata.com/api/v1/projects/acme/context/entitymatching/pipelines/1/runs/9",
        "ce-id": f"acme/1/9/{subject}",
        "ce-subject": subject,
        "ce-time": "2024-10-29T12:20:06.000Z",
        "content-type": "application/json",
        "ce-cdfproject": "acme",
        "ce-pipelineid": "1",
        "ce-runid": "9",
    }
    message = {
        "data": base64.b64encode(json.dumps(data).encode()).decode(),
        "attributes": attributes,
        "messageId": "1234",
        "publishTime": "2024-10-29T12:20:07.000Z",
    }
    return {"message": message, "subscription": f"projects/{GCP_PROJECT}/subscriptions/eventarc-sub"}


MATCH_DATA: dict[str, Any] = {
    "project": "acme",
    "pipelineId": 1,
    "runId": 9,
    "jobId": 9,
    "matchIndex": 17,
    "matchType": "model",
    "score": 0.91,
    "source": {"id": 5},
    "target": {"id": 6, "externalId": "asset-6"},
    "sourceId": 5,
    "sourceExternalId": None,
    "targetId": 6,
    "targetExternalId": "asset-6",
}


# --- unit: unwrap, threshold, document ids, settings --------------------------------------------------


def test_unwrap_reads_the_matchrelay_event_from_the_message_attributes_and_data() -> None:
    """The ce- attributes become the event's context attributes and the decoded body its data."""
    event = downstream.unwrap(matchrelay_event("match", "match/17", MATCH_DATA))

    assert (event["id"], event["type"], event["subject"]) == ("acme/1/9/match/17", PREFIX + "match", "match/17")
    assert (event["specversion"], event["datacontenttype"], event["time"]) == (
        "1.0",
        "application/json",
        "2024-10-29T12:20:06.000Z",
    )
    assert (event["cdfproject"], event["pipelineid"], event["runid"]) == ("acme", "1", "9")
    assert event.get_data() == MATCH_DATA


def test_unwrap_reads_what_functions_framework_makes_of_a_raw_push_request() -> None:
    """A raw push body, converted by functions-framework, unwraps to the same event as Eventarc's."""
    import flask
    from functions_framework.event_conversion import background_event_to_cloud_event

    wrapped = matchrelay_event("match", "match/17", MATCH_DATA)
    with flask.Flask("push").test_request_context("/", method="POST", json=wrapped):
        envelope = background_event_to_cloud_event(flask.request)

    assert envelope["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert envelope["id"] == "1234"
    event = downstream.unwrap(envelope.get_data())
    assert event["id"] == "acme/1/9/match/17"
    assert event.get_data() == MATCH_DATA


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda m: m["attributes"].pop("ce-specversion"), "no ce-specversion: not binary content mode"),
        (lambda m: m["attributes"].pop("ce-type"), "no ce-type"),
        (lambda m: m.update(data="not base64!"), "data not base64"),
        (lambda m: m.update(data=base64.b64encode(b"{not json").decode()), "data not JSON"),
        (lambda m: m.pop("attributes"), "no attributes at all"),
    ],
)
def test_unwrap_refuses_what_is_not_a_matchrelay_event(change: Any, what: str) -> None:
    """Messages that are not binary-mode CloudEvents with JSON data raise one of the errors the function acks."""
    wrapped = matchrelay_event("match", "match/17", MATCH_DATA)
    change(wrapped["message"])

    with pytest.raises(downstream.MALFORMED):
        downstream.unwrap(wrapped)


@pytest.mark.parametrize(
    ("score", "keep"),
    [(0.8, True), (0.95, True), (1, True), (0.7999, False), (0, False), (None, False), (True, False), ("0.9", False)],
)
def test_threshold_keeps_numeric_scores_at_least_the_minimum(score: Any, keep: bool) -> None:
    """A match is kept when its score is a number ≥ MIN_SCORE; null, booleans and strings never are."""
    assert downstream.kept({"score": score}, MIN_SCORE) is keep


def test_threshold_default_keeps_every_scored_match() -> None:
    """Without MIN_SCORE the threshold is 0: every match with a score is kept, a null score still is not."""
    settings_ = downstream.load_settings({})
    assert settings_.min_score == 0.0
    assert downstream.kept({"score": 0.0}, settings_.min_score)
    assert not downstream.kept({"score": None}, settings_.min_score)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"MIN_SCORE": "high"}, "MIN_SCORE"),
        ({"MIN_SCORE": "nan"}, "MIN_SCORE"),
        ({"FIRESTORE_TIMEOUT_S": "0"}, "TIMEOUT"),
    ],
)
def test_settings_refuse_a_wrong_value_by_name(environ: dict[str, str], named: str) -> None:
    """A wrong setting is refused with the variable's name in the message."""
    with pytest.raises(ValueError, match=named):
        downstream.load_settings(environ)


def test_doc_id_encodes_a_ce_id_without_slashes() -> None:
    """matchrelay's ce-ids become percent-encoded ids with no '/', and decode back."""
    assert downstream.doc_id("acme/123/456/match/17") == "acme%2F123%2F456%2Fmatch%2F17"
    assert downstream.doc_id("demo/1/latest/77/run") == "demo%2F1%2Flatest%2F77%2Frun"
    assert downstream.doc_id("a.b_c~d%e") == "a%2Eb%5Fc%7Ed%25e"


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(min_size=1, max_size=200))
def test_doc_id_is_a_valid_firestore_id_that_decodes_back(key: str) -> None:
    """Any key gives a legal Firestore document id (no '/', not '.', '..' or __x__) that unquote reverses."""
    encoded = downstream.doc_id(key)

    assert "/" not in encoded
    assert encoded not in (".", "..")
    assert not (encoded.startswith("__") and encoded.endswith("__"))
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-%")
    assert len(encoded.encode()) <= 1500
    assert urllib.parse.unquote(encoded) == key


def test_doc_id_refuses_keys_firestore_cannot_hold() -> None:
    """An empty key or one too long for Firestore's 1500 bytes is refused rather than cut."""
    for key in ("", "x" * 1501, "/" * 501):
        with pytest.raises(ValueError):
            downstream.doc_id(key)


def test_parse_ignores_rules_and_failures_and_refuses_a_match_without_its_position() -> None:
    """Only match and run.completed become items; a match without a valid matchIndex is malformed."""
    for kind in ("suggestedrule", "generatedrule", "run.failed"):
        assert downstream.parse(downstream.unwrap(matchrelay_event(kind, "run", MATCH_DATA)), MIN_SCORE) is None
    item = downstream.parse(downstream.unwrap(matchrelay_event("match", "match/17", MATCH_DATA)), MIN_SCORE)
    assert (item.ce_id, item.run, item.index, item.keep) == ("acme/1/9/match/17", "acme/1/9", 17, True)
    for index in (None, -1, "17", True):
        broken = matchrelay_event("match", "match/17", {**MATCH_DATA, "matchIndex": index})
        with pytest.raises(ValueError):
            downstream.parse(downstream.unwrap(broken), MIN_SCORE)


def test_store_create_tells_its_own_retried_write_from_an_earlier_delivery(
    firestore_emulator: FirestoreEmulator, fs_project: str
) -> None:
    """A create that meets the document its own attempt wrote is new; one written by another attempt is not."""
    client = firestore_client(firestore_emulator.host, fs_project)
    store = downstream.Store(client, downstream.Settings())
    ref = store.runs.document("r").collection("seen").document("0")
    assert store.create(ref, {"ceId": "a/1/2/match/0", "kept": True}, "first")
    assert store.create(ref, {"ceId": "a/1/2/match/0", "kept": True}, "first")  # the client's retry
    assert not store.create(ref, {"ceId": "a/1/2/match/0", "kept": True}, "second")  # a redelivery
    assert ref.get().to_dict() == {"ceId": "a/1/2/match/0", "kept": True, "attempt": "first"}


# --- the function alone, Firestore unreachable ------------------------------------------------------------


def test_downstream_answers_503_when_firestore_is_unreachable_and_acks_what_it_ignores(tmp_path: Path) -> None:
    """With no Firestore, a match is handed back (503); a rule and an unreadable message are acked without it."""
    log = tmp_path / "downstream.log"
    with downstream_process(downstream_env(f"127.0.0.1:{free_port()}", "nowhere"), log) as url:

        def post(wrapped: dict[str, Any]) -> int:
            body = json.dumps(wrapped).encode()
            return httpx.post(url, headers={"Content-Type": "application/json"}, content=body, timeout=60).status_code

        broken = matchrelay_event("match", "match/17", MATCH_DATA)
        broken["message"]["data"] = base64.b64encode(b"{not json").decode()
        assert post(matchrelay_event("match", "match/17", MATCH_DATA)) == 503
        assert post(matchrelay_event("run.completed", "run", {**MATCH_DATA, "matchCount": 1})) == 503
        assert post(matchrelay_event("suggestedrule", "suggestedrule/0", MATCH_DATA)) == 200
        assert post(broken) == 200
    assert [line["outcome"] for line in log_lines(log)] == ["unavailable", "unavailable", "ignored", "malformed"]


# --- end to end: matchrelay -> Pub/Sub push -> downstream -> Firestore ------------------------------------


def test_downstream_records_each_kept_match_once_across_replays_and_duplicates(
    env: dict[str, str],
    sim: CdfSimulator,
    pubsub: PubSub,
    topics: Topics,
    firestore_emulator: FirestoreEmulator,
    fs_project: str,
    tmp_path: Path,
) -> None:
    """A run relayed three times, every event then posted again at once: each kept match stored once, one completion."""
    body = make_run(40, 2, 1, job_id=456)
    sim.set_run(1, 456, [Step.status("Running"), Step.run(body)])
    log = tmp_path / "downstream.log"
    per_relay = 40 + 3 + 1
    with (
        # Firestore is up throughout: a timeout no loaded emulator reaches, so every outcome is counted exactly.
        downstream_process(downstream_env(firestore_emulator.host, fs_project, RELAXED_S), log) as url,
        function_process(relay_env(env), tmp_path / "matchrelay.log") as (_, relay_url),
    ):
        push_to(pubsub, topics.events, url)
        for _ in range(3):  # the trigger, a replay, another: the same 44 events each time
            assert trigger(relay_url, 456) == 200
        published = pull_all(pubsub, topics.events_sub, at_least=3 * per_relay)
        assert sorted(redeliver(url, published)) == [200] * len(published)
        wait_for(lambda: {m.message_id for m in published} <= acked_ids(log), 120)

    client = firestore_client(firestore_emulator.host, fs_project)
    check_recorded(client, body, 456)
    assert len(outcomes(log, "complete")) == 1
    assert len(outcomes(log, "stored")) == len(kept_ids(body, 456))
    assert len(outcomes(log, "below-threshold")) == 40 - len(kept_ids(body, 456))
    assert len(outcomes(log, "summary")) == 1
    assert len(outcomes(log, "duplicate")) >= 3 * 41 * 2 - 41  # every match and summary after its first delivery
    assert len(outcomes(log, "ignored")) >= 3 * 4  # the rules, never stored
    assert outcomes(log, "unavailable") == []
    assert outcomes(log, "malformed") == []
    handled, kept = len(log_lines(log)), len(kept_ids(body, 456))
    print(f"\n{len(published)} events published, {handled} deliveries handled, {kept} matches kept")


def test_downstream_hands_back_while_firestore_is_down_and_completes_after_it_returns(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics, tmp_path: Path
) -> None:
    """Firestore stopped part-way: deliveries get 503 and come back; after its restart the run is recorded once."""
    body = make_run(300, job_id=457)
    sim.set_run(1, 457, [Step.run(body)])
    project, run = f"outage-{uuid.uuid4().hex[:8]}", "demo/1/457"
    own = FirestoreEmulator()  # not the session's: stopping that one would break the other tests
    own.start(tmp_path / "firestore.log")
    log, port = tmp_path / "downstream.log", free_port()
    try:
        with function_process(relay_env(env), tmp_path / "matchrelay.log") as (_, relay_url):
            with downstream_process(downstream_env(own.host, project), log, port) as url:
                push_to(pubsub, topics.events, url)
                assert trigger(relay_url, 457) == 200
                client = firestore_client(own.host, project)
                wait_for(lambda: seen_count(client, run) >= 30, 120)
            # The function is gone (SIGKILL), so nothing it acked is written after the export.
            at_stop = seen_count(client, run)
            before = set(stored(client, "matchrelay_matches"))
            export = own.export(project, tmp_path / "export")
            own.stop()
            with downstream_process(downstream_env(own.host, project), log, port):
                assert trigger(relay_url, 457) == 200  # a replay during the outage: all 301 pushed again
                wait_for(lambda: len(outcomes(log, "unavailable")) >= 10, 120)
                own.start(tmp_path / "firestore.log", import_data=export)
                client = firestore_client(own.host, project)
                published = pull_all(pubsub, topics.events_sub, at_least=2 * 301)
                wait_for(lambda: {m.message_id for m in published} <= acked_ids(log), 240)
        check_recorded(client, body, 457)
        assert before <= set(stored(client, "matchrelay_matches"))
        assert len(outcomes(log, "complete")) == 1
        handed_back = len(outcomes(log, "unavailable"))
        print(f"\nFirestore stopped with {at_stop} of 300 matches seen; {handed_back} deliveries handed back")
    finally:
        own.stop()
