"""``./dev soak``: many runs through CDF faults and Pub/Sub redeliveries; what subscribers got.

``python -m bench.soak --runs N --seed S`` scripts N runs in the CDF simulator,
each a random mix (from ``random.Random(seed)``) of Queued/Running answers and
faults: 429 with and without ``Retry-After``, 5xx, an auto-retryable 4xx,
dropped connections, slow answers (some past ``HTTP_TIMEOUT_S``), token expiry
with token endpoint faults, and malformed bodies (at most 3 in a row, so the run
still completes; a few runs answer malformed bodies for ever and must end as
``run.failed`` ``invalid_response``). A run then completes (random small sizes,
rules included) or fails.

The function is loaded as functions-framework deploys it (``create_app``, one
instance shared by a few threads, as gunicorn's gthread worker shares it), with a
small ``POLL_BUDGET_S``. Each run's trigger is delivered in Eventarc's binary
mode and, while the function answers non-2xx, delivered again with the same
``messageId`` and ``publishTime``, as Pub/Sub does. Then both subscriptions are
drained and every event is checked: its attributes and data against the
contract (section 5) and against the body CDF answered, and each run's
``ce-id`` set against the one its final answer calls for.

It prints one line of figures and the same as a Markdown table; the exit code is
0 when nothing was lost, nothing malformed and every run's set is complete.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import io
import json
import logging
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handlers.process.logs import JsonFormatter
from sim import CdfSimulator, Step, make_run
from sim.data import run_summary
from sim.emulator import Emulator
from tests.contract import COMMON_ATTRIBUTES, DATA_FIELDS, TYPE_ATTRIBUTES, TYPE_PREFIX, contract_problems

ROOT = Path(__file__).resolve().parent.parent
GCP_PROJECT = "matchrelay-soak"
CDF_PROJECT = "demo"
CLIENT_ID = "matchrelay"
CLIENT_SECRET = "soak-Secret-4b2e"
MALFORMED_BODIES = (  # 200 answers that are not a run; none of them gets as far as publishing
    Step.raw(200, b"<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
    Step.raw(200, b""),
    Step.raw(200, b"[]"),
    Step.raw(200, b'{"status": 42}'),
    Step.raw(200, b'{"jobId": 7, "createdTime": "yesterday"}'),
    Step.raw(200, json.dumps(run_summary("Running")).encode()[:25]),
)
ENV_PREFIXES = ("CDF_", "IDP_", "RELAY_", "POLL_", "RUN_", "HTTP_", "PUBSUB_", "LOG_")


@dataclass(frozen=True)
class Config:
    """How big and how hostile a soak is; the function's timings are kept small so hand-backs happen."""

    runs: int = 50
    seed: int = 1
    threads: int = 4
    budget_s: float = 0.5  # POLL_BUDGET_S
    http_timeout_s: float = 0.5  # HTTP_TIMEOUT_S
    slow_s: float = 1.0  # a slow answer past HTTP_TIMEOUT_S
    max_deliveries: int = 50  # per run; a run still handed back after that many counts as lost
    expire_age_s: float = 0.2  # token expiry spares tokens younger than this (see ChaosSimulator)


class ChaosSimulator(CdfSimulator):
    """The CDF simulator, plus token expiry that spares tokens fetched a moment ago.

    ``expire_tokens()`` revokes every token, including one a concurrent run has
    just fetched and not yet used; CDF refusing a token fetched just now is
    ``access_denied`` by contract, so a global revocation would fail a healthy run
    whenever two threads meet in that window. So only tokens older than
    ``expire_age_s`` are revoked, and the revocations are counted.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokens_expired = 0

    def expire_tokens_older_than(self, age_s: float) -> int:
        expired = self.expire_tokens(older_than_s=age_s)
        self.tokens_expired += expired
        return expired


@dataclass
class Plan:
    """One run: its coordinates, its script, the faults in it, and how it must end."""

    index: int
    pipeline_id: int
    run_id: int
    steps: list[Step]
    faults: collections.Counter[str]
    ending: str  # "completed", "run_failed" or "invalid_response"
    body: dict[str, Any] | None  # the final answer for completed and run_failed
    message: dict[str, Any]

    @property
    def prefix(self) -> str:
        return f"{CDF_PROJECT}/{self.pipeline_id}/{self.run_id}/"

    def expected(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every ``ce-id`` the run owes subscribers: its type and the data it must carry."""
        base = {"project": CDF_PROJECT, "pipelineId": self.pipeline_id, "runId": self.run_id}
        if self.ending == "invalid_response":
            return {self.prefix + "run/failed/invalid_response": ("run.failed", {**base, "reason": "invalid_response"})}
        assert self.body is not None
        body = self.body
        times = {k: body[k] for k in ("createdTime", "startTime", "statusTime")}
        run = {**base, "jobId": body["jobId"], **times, "errors": body["errors"]}
        if self.ending == "run_failed":
            failed = {**run, "status": "Failed", "reason": "run_failed", "errorMessage": body["errorMessage"]}
            return {self.prefix + "run/failed/run_failed": ("run.failed", failed)}
        owed: dict[str, tuple[str, dict[str, Any]]] = {}
        for i, m in enumerate(body["matches"]):
            owed[f"{self.prefix}match/{i}"] = (
                "match",
                {
                    **base,
                    "jobId": body["jobId"],
                    "matchIndex": i,
                    "matchType": m["matchType"],
                    "score": m["score"],
                    "source": m["source"],
                    "target": m["target"],
                    "sourceId": m["source"].get("id"),
                    "sourceExternalId": m["source"].get("externalId"),
                    "targetId": m["target"].get("id"),
                    "targetExternalId": m["target"].get("externalId"),
                },
            )
        for i, rule in enumerate(body["suggestedRules"]):
            owed[f"{self.prefix}suggestedrule/{i}"] = ("suggestedrule", {**base, "ruleIndex": i, **rule})
        for i, rule in enumerate(body["generatedRules"]):
            owed[f"{self.prefix}generatedrule/{i}"] = ("generatedrule", {**base, "ruleIndex": i, **rule})
        counts = {
            "matchCount": len(body["matches"]),
            "suggestedRuleCount": len(body["suggestedRules"]),
            "generatedRuleCount": len(body["generatedRules"]),
        }
        owed[self.prefix + "run"] = ("run.completed", {**run, "status": "Completed", **counts})
        return owed


def trigger_message(pipeline_id: int, run_id: int, message_id: str) -> dict[str, Any]:
    """A Pub/Sub message naming a run, as Eventarc hands it over (``data`` base64)."""
    body = json.dumps({"pipelineId": pipeline_id, "runId": run_id}).encode()
    return {
        "data": base64.b64encode(body).decode(),
        "attributes": {},
        "messageId": message_id,
        "publishTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
    }


def binary_event(message: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    """Eventarc's ``messagePublished`` CloudEvent in binary content mode: headers and body."""
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": f"//pubsub.googleapis.com/projects/{GCP_PROJECT}/topics/trigger",
        "ce-id": str(message["messageId"]),
        "ce-time": str(message["publishTime"]),
        "Content-Type": "application/json",
    }
    body = {"message": dict(message), "subscription": f"projects/{GCP_PROJECT}/subscriptions/eventarc-sub"}
    return headers, json.dumps(body).encode()


def _expiring(sim: ChaosSimulator, age_s: float, answer: Step, token_fault: Step | None) -> Step:
    """``answer``, having expired the tokens in use (and queued a token endpoint fault) as it is served."""

    def chunks() -> Iterator[bytes]:
        sim.expire_tokens_older_than(age_s)
        if token_fault is not None:
            sim.token_steps.append(token_fault)
        yield answer.body

    return Step.stream(chunks)


def plan_run(rng: random.Random, index: int, sim: ChaosSimulator, config: Config) -> Plan:
    """A random script for run ``index``: statuses and faults, then the final answer."""
    pipeline_id, run_id = 1 + index % 7, 10_000 + index
    faults: collections.Counter[str] = collections.Counter()
    # Endings by index, so that even a small soak has both kinds of expected failure (about 6 % and 10 %).
    ending = "invalid_response" if index % 17 == 5 else "run_failed" if index % 10 == 7 else "completed"
    body: dict[str, Any] | None = None
    if ending == "completed":
        errors = ["2 sources had no name; skipped"] if rng.random() < 0.2 else []
        sizes = (rng.randint(0, 12), rng.randint(0, 3), rng.randint(0, 3))
        body = make_run(*sizes, job_id=run_id, errors=errors, rule_size=rng.randint(1, 4))
    elif ending == "run_failed":
        errors = ["source dataset 17 is empty"] if rng.random() < 0.5 else []
        body = make_run(0, status="Failed", job_id=run_id, error_message="Source dataset is empty", errors=errors)

    def running() -> Step:
        return Step.status(rng.choice(("Queued", "Running")), run_id)

    steps: list[Step] = []
    for _ in range(rng.randint(1, 9)):
        pick = rng.random()
        if pick < 0.25:
            steps.append(running())
            continue
        kind = rng.choice(
            (
                "429",
                "429 retry-after 0",
                "429 retry-after 1",
                "500",
                "502",
                "503",
                "504",
                "auto-retryable 400",
                "drop",
                "slow",
                "timeout",
                "token expiry",
                "malformed",
            )
        )
        if kind == "malformed":
            streak = rng.randint(1, 3)
            for _ in range(streak):
                if body is not None and ending == "completed" and rng.random() < 0.3:
                    # A results body cut short: some events are published before it breaks off.
                    text = json.dumps(body).encode()
                    steps.append(Step.raw(200, text[: rng.randint(1, max(1, len(text) - 1))]))
                    faults["malformed (truncated results)"] += 1
                else:
                    steps.append(rng.choice(MALFORMED_BODIES))
                    faults["malformed"] += 1
            steps.append(running())  # a well-formed answer ends the streak: never 4 in a row
            continue
        faults[kind] += 1
        if kind.startswith("429"):
            steps.append(Step.throttle(kind.split()[-1] if "retry-after" in kind else None))
        elif kind.isdigit():
            steps.append(Step.error(int(kind)))
        elif kind == "auto-retryable 400":
            steps.append(Step.error(400, "Try again", {"cdf-is-auto-retryable": "true"}))
        elif kind == "drop":
            steps.append(Step.drop())
        elif kind == "slow":
            steps.append(Step.slow(rng.uniform(0.05, config.http_timeout_s / 2), running()))
        elif kind == "timeout":
            steps.append(Step.slow(config.slow_s, running()))
        else:
            token_fault = rng.choice((None, Step.error(503), Step.throttle("0"), Step.drop()))
            if token_fault is not None:
                faults["token endpoint fault"] += 1
            steps.append(_expiring(sim, config.expire_age_s, running(), token_fault))
    if ending == "invalid_response":
        steps.append(rng.choice(MALFORMED_BODIES))  # the last step repeats: malformed for ever
        faults["malformed (for ever)"] += 1
    else:
        assert body is not None
        final = Step.run(body)
        steps.append(Step.slow(rng.uniform(0.01, 0.1), final) if rng.random() < 0.2 else final)
    message = trigger_message(pipeline_id, run_id, f"{config.seed:04d}{index:07d}")
    return Plan(index, pipeline_id, run_id, steps, faults, ending, body, message)


@dataclass
class Delivery:
    """How one run's trigger fared: the answers, in order."""

    answers: list[int] = field(default_factory=list)

    @property
    def acked(self) -> bool:
        return bool(self.answers) and 200 <= self.answers[-1] < 300


class _LogLines(logging.Handler):
    """Keeps the function's structured log lines that matter here: outcome summaries and errors."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.outcomes: list[dict[str, Any]] = []
        self.errors = 0
        self._lock_lines = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = json.loads(self.format(record))
        with self._lock_lines:
            if "outcome" in line:
                self.outcomes.append(line)
            if record.levelno >= logging.ERROR:
                self.errors += 1


@dataclass
class Received:
    topic: str  # "events" or "errors"
    attributes: dict[str, str]
    data: bytes


@dataclass
class Report:
    """The figures of one soak."""

    runs: int
    seed: int
    threads: int
    budget_s: float
    endings: collections.Counter[str]
    faults: collections.Counter[str]
    invocations: int
    polls: int
    retries: int
    redeliveries: int
    handbacks: collections.Counter[str]
    token_fetches: int
    tokens_expired: int
    events_expected: int
    events_received: int
    distinct: int
    lost: int
    unexpected: int
    malformed: int
    runs_complete: int
    runs_unacked: int
    errors_logged: int
    seconds: float
    problems: list[str]
    incomplete: list[str]

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.malformed == 0 and self.unexpected == 0 and self.runs_complete == self.runs

    def figures(self) -> list[tuple[str, str]]:
        return [
            ("runs", f"{self.runs} (seed {self.seed}, {self.threads} threads, POLL_BUDGET_S {self.budget_s:g})"),
            ("runs completed", f"{self.endings['completed']}"),
            (
                "expected failures (run_failed / invalid_response)",
                f"{self.endings['run_failed']} / {self.endings['invalid_response']}",
            ),
            ("faults injected", f"{sum(self.faults.values())}"),
            ("invocations", f"{self.invocations}"),
            ("polls / retries", f"{self.polls} / {self.retries}"),
            ("redeliveries", f"{self.redeliveries}"),
            ("hand-backs", ", ".join(f"{k} {v}" for k, v in sorted(self.handbacks.items())) or "0"),
            ("token fetches / tokens expired", f"{self.token_fetches} / {self.tokens_expired}"),
            ("events expected", f"{self.events_expected}"),
            ("events received", f"{self.events_received}"),
            ("distinct ce-ids", f"{self.distinct}"),
            ("lost", f"{self.lost}"),
            ("unexpected", f"{self.unexpected}"),
            ("malformed", f"{self.malformed}"),
            ("runs with their complete ce-id set", f"{self.runs_complete} / {self.runs}"),
            ("error log lines", f"{self.errors_logged}"),
            ("seconds", f"{self.seconds:.1f}"),
        ]

    def line(self) -> str:
        return (
            f"soak: runs={self.runs} seed={self.seed} faults={sum(self.faults.values())} retries={self.retries} "
            f"redeliveries={self.redeliveries} events_expected={self.events_expected} "
            f"events_received={self.events_received} distinct={self.distinct} lost={self.lost} "
            f"malformed={self.malformed} unexpected={self.unexpected} "
            f"complete={self.runs_complete}/{self.runs} seconds={self.seconds:.1f}"
        )

    def table(self) -> str:
        rows = ["| figure | value |", "|---|---:|"]
        rows += [f"| {name} | {value} |" for name, value in self.figures()]
        rows.append("")
        rows.append("| fault | injected |")
        rows.append("|---|---:|")
        rows += [f"| {kind} | {n} |" for kind, n in sorted(self.faults.items())]
        return "\n".join(rows)


def event_problems(topic: str, attributes: Mapping[str, str], raw: bytes, cdf_url: str) -> list[str]:
    """What is wrong with one received event by the contract alone (section 5); empty when nothing.

    Beyond ``contract_problems``: each type on its topic; every trigger names its run, so every event has
    all the attributes and its ``ce-id`` is the run's.
    """
    problems = contract_problems(attributes, raw, cdf_url)
    kind = attributes.get("ce-type", "").removeprefix(TYPE_PREFIX)
    if kind not in DATA_FIELDS:
        return problems
    if (topic == "errors") != (kind == "run.failed"):
        problems.append(f"{kind} on the {topic} topic")
    wanted = COMMON_ATTRIBUTES | TYPE_ATTRIBUTES[kind]
    if set(attributes) != wanted:
        problems.append(f"attributes {sorted(set(attributes) ^ wanted)} differ")
    run = "/".join(attributes.get(name, "") for name in ("ce-cdfproject", "ce-pipelineid", "ce-runid", "ce-subject"))
    if attributes.get("ce-id") != run:
        problems.append(f"ce-id {attributes.get('ce-id')!r} is not {run!r}")
    return problems


def content_problems(kind: str, raw: bytes, owed: tuple[str, dict[str, Any]]) -> list[str]:
    """What differs between a received event and what the run's CDF answer calls for."""
    want_kind, want = owed
    if kind != want_kind:
        return [f"{kind} where {want_kind} is owed"]
    try:
        data = json.loads(raw)
    except ValueError:
        return []  # already counted by event_problems
    return [f"{kind} {key}: {data.get(key)!r} != {value!r}" for key, value in want.items() if data.get(key) != value]


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """The process environment of a deployment (nothing inherited that the function reads), restored after."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class _PubSub:
    """Topics, subscriptions and a subscriber's pull on the emulator ``PUBSUB_EMULATOR_HOST`` names."""

    def __init__(self) -> None:
        from google.cloud import pubsub_v1

        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()

    def topic(self, name: str) -> tuple[str, str]:
        topic = str(self.publisher.topic_path(GCP_PROJECT, name))
        sub = str(self.subscriber.subscription_path(GCP_PROJECT, name + "-sub"))
        self.publisher.create_topic(name=topic)
        self.subscriber.create_subscription(name=sub, topic=topic, ack_deadline_seconds=60)
        return topic, sub

    def drain(self, sub: str, label: str, want: int, quiet_s: float = 10.0) -> list[Received]:
        """Pull and ack until ``want`` distinct ce-ids are in and nothing more comes, or nothing comes for a while."""
        got: list[Received] = []
        ids: set[str] = set()
        last_new, empty = time.monotonic(), 0
        while time.monotonic() - last_new < quiet_s:
            response = self.subscriber.pull(
                request={"subscription": sub, "max_messages": 1000, "return_immediately": True}, timeout=30
            )
            if not response.received_messages:
                empty += 1
                if len(ids) >= want and empty >= 3:
                    break
                time.sleep(0.05)
                continue
            empty, last_new = 0, time.monotonic()
            for m in response.received_messages:
                attributes = dict(m.message.attributes)
                got.append(Received(label, attributes, bytes(m.message.data)))
                ids.add(attributes.get("ce-id", ""))
            self.subscriber.acknowledge(
                request={"subscription": sub, "ack_ids": [m.ack_id for m in response.received_messages]}
            )
        return got


def _load_function() -> Any:
    """``main.py`` loaded by functions-framework as on a new instance: the WSGI app."""
    import functions_framework

    create_app: Any = functions_framework.create_app  # untyped
    return create_app(target="on_run_message", source=str(ROOT / "main.py"), signature_type="cloudevent")


def _deliver_until_acked(app: Any, local: threading.local, plan: Plan, config: Config) -> Delivery:
    """Deliver the run's trigger; while the answer is non-2xx, deliver the same message again."""
    client = getattr(local, "client", None)
    if client is None:
        client = local.client = app.test_client()  # one per thread, as gunicorn's threads share the app
    headers, body = binary_event(plan.message)
    delivery = Delivery()
    while len(delivery.answers) < config.max_deliveries and not delivery.acked:
        delivery.answers.append(int(client.post("/", headers=headers, data=body).status_code))
    return delivery


def soak(config: Config, emulator_host: str, log_path: Path) -> Report:
    """Run the soak against the emulator at ``emulator_host``; the function's own log lines go to ``log_path``."""
    started = time.monotonic()
    rng = random.Random(config.seed)
    tag = uuid.uuid4().hex[:10]
    with ChaosSimulator(CDF_PROJECT, CLIENT_ID, CLIENT_SECRET) as sim:
        env = {
            "CDF_PROJECT": CDF_PROJECT,
            "CDF_URL": sim.url,
            "IDP_TOKEN_URL": sim.token_url,
            "IDP_CLIENT_ID": CLIENT_ID,
            "IDP_CLIENT_SECRET": CLIENT_SECRET,
            "POLL_INITIAL_DELAY_S": "0.01",
            "POLL_MAX_DELAY_S": "0.05",
            "POLL_BUDGET_S": str(config.budget_s),
            "HTTP_TIMEOUT_S": str(config.http_timeout_s),
            "LOG_LEVEL": "INFO",
            "PUBSUB_EMULATOR_HOST": emulator_host,
        }
        with patched_environ(env):
            pubsub = _PubSub()
            events_topic, events_sub = pubsub.topic(f"soak-events-{tag}")
            errors_topic, errors_sub = pubsub.topic(f"soak-errors-{tag}")
            os.environ.update({"RELAY_TOPIC": events_topic, "RELAY_ERROR_TOPIC": errors_topic})
            plans = [plan_run(rng, i, sim, config) for i in range(config.runs)]
            for plan in plans:
                sim.set_run(plan.pipeline_id, plan.run_id, plan.steps)
            lines = _LogLines()
            root = logging.getLogger()
            with log_path.open("a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
                app = _load_function()
                root.addHandler(lines)
                try:
                    local = threading.local()
                    with ThreadPoolExecutor(max(1, config.threads), thread_name_prefix="soak") as pool:
                        deliveries = list(pool.map(lambda p: _deliver_until_acked(app, local, p, config), plans))
                finally:
                    root.removeHandler(lines)
            owed = {ce_id: want for plan in plans for ce_id, want in plan.expected().items()}
            received = pubsub.drain(events_sub, "events", sum(1 for k, _ in owed.values() if k != "run.failed"))
            received += pubsub.drain(errors_sub, "errors", sum(1 for k, _ in owed.values() if k == "run.failed"))
        report = _analyse(config, sim, plans, deliveries, lines, owed, received)
    report.seconds = time.monotonic() - started
    return report


def _analyse(
    config: Config,
    sim: ChaosSimulator,
    plans: list[Plan],
    deliveries: list[Delivery],
    lines: _LogLines,
    owed: dict[str, tuple[str, dict[str, Any]]],
    received: list[Received],
) -> Report:
    problems: list[str] = []
    malformed = 0
    by_id: dict[str, int] = collections.Counter()
    for event in received:
        ce_id = event.attributes.get("ce-id", "")
        found = event_problems(event.topic, event.attributes, event.data, sim.url)
        kind = event.attributes.get("ce-type", "").removeprefix(TYPE_PREFIX)
        if ce_id in owed:
            found += content_problems(kind, event.data, owed[ce_id])
        by_id[ce_id] += 1
        if found:
            malformed += 1
            problems += [f"{ce_id}: {p}" for p in found[:3]]
    incomplete = []
    for plan, delivery in zip(plans, deliveries, strict=True):
        want = set(plan.expected())
        got = {ce_id for ce_id in by_id if ce_id.startswith(plan.prefix)}
        if want != got or not delivery.acked:
            incomplete.append(
                f"run {plan.pipeline_id}/{plan.run_id} ({plan.ending}, answers {delivery.answers[-5:]}): "
                f"missing {sorted(want - got)[:5]}, extra {sorted(got - want)[:5]}"
            )
    faults: collections.Counter[str] = collections.Counter()
    for plan in plans:
        faults.update(plan.faults)
    faults["token endpoint fault"] -= len(sim.token_steps)  # queued but never asked for
    faults = +faults
    handbacks = collections.Counter(str(o.get("reason")) for o in lines.outcomes if o["outcome"] == "handed_back")
    return Report(
        runs=len(plans),
        seed=config.seed,
        threads=config.threads,
        budget_s=config.budget_s,
        endings=collections.Counter(p.ending for p in plans),
        faults=faults,
        invocations=sum(len(d.answers) for d in deliveries),
        polls=sum(int(o.get("polls", 0)) for o in lines.outcomes),
        retries=sum(int(o.get("retries", 0)) for o in lines.outcomes),
        redeliveries=sum(len(d.answers) - 1 for d in deliveries),
        handbacks=handbacks,
        token_fetches=len(sim.token_requests()),
        tokens_expired=sim.tokens_expired,
        events_expected=len(owed),
        events_received=len(received),
        distinct=len(by_id),
        lost=len(set(owed) - set(by_id)),
        unexpected=len(set(by_id) - set(owed)),
        malformed=malformed,
        runs_complete=len(plans) - len(incomplete),
        runs_unacked=sum(not d.acked for d in deliveries),
        errors_logged=lines.errors,
        seconds=0.0,
        problems=problems[:20],
        incomplete=incomplete[:20],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./dev soak", description="Chaos soak: runs through CDF faults and redeliveries."
    )
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=4, help="deliveries in parallel on one function instance")
    parser.add_argument("--budget", type=float, default=0.5, help="POLL_BUDGET_S of the function")
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    parser.add_argument("--log", type=Path, default=tmp / "matchrelay-soak.log", help="the function's log lines")
    args = parser.parse_args(argv)
    config = Config(runs=args.runs, seed=args.seed, threads=args.threads, budget_s=args.budget)
    emulator = Emulator()
    emulator.start(tmp / "matchrelay-soak-emulator.log")
    try:
        report = soak(config, emulator.host, args.log)
    finally:
        emulator.stop()
    out = io.StringIO()
    print(report.line(), file=out)
    print(file=out)
    print(report.table(), file=out)
    for text in report.incomplete + report.problems:
        print(f"! {text}", file=out)
    print(f"\nthe function's log: {args.log}", file=out)
    sys.stdout.write(out.getvalue())
    sys.stdout.flush()
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
