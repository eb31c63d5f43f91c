"""The fault script: what CDF answers a run before its last answer, drawn at random.

Queued/Running answers and faults: 429 with and without ``Retry-After``, 5xx,
an auto-retryable 4xx, dropped connections, slow answers (some past
``HTTP_TIMEOUT_S``), token expiry with token endpoint faults, and malformed
bodies, at most 3 in a row so that the run still completes.
"""

from __future__ import annotations

import collections
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

from bench.soak.config import Config
from sim import CdfSimulator, Step
from sim.data import run_summary

MALFORMED_BODIES = (  # 200 answers that are not a run; none of them gets as far as publishing
    Step.raw(200, b"<html><body>502 Bad Gateway</body></html>", content_type="text/html"),
    Step.raw(200, b""),
    Step.raw(200, b"[]"),
    Step.raw(200, b'{"status": 42}'),
    Step.raw(200, b'{"jobId": 7, "createdTime": "yesterday"}'),
    Step.raw(200, json.dumps(run_summary("Running")).encode()[:25]),
)
FAULT_KINDS = (
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


def _expiring(sim: ChaosSimulator, age_s: float, answer: Step, token_fault: Step | None) -> Step:
    """``answer``, having expired the tokens in use (and queued a token endpoint fault) as it is served."""

    def chunks() -> Iterator[bytes]:
        sim.expire_tokens_older_than(age_s)
        if token_fault is not None:
            sim.token_steps.append(token_fault)
        yield answer.body

    return Step.stream(chunks)


def fault_steps(
    rng: random.Random,
    sim: ChaosSimulator,
    config: Config,
    running: Callable[[], Step],
    completed: dict[str, Any] | None,
) -> tuple[list[Step], collections.Counter[str]]:
    """One to nine answers before the last one, and the faults among them.

    ``running`` draws a Queued/Running answer; ``completed`` is the body of a run
    that will complete (``None`` otherwise), which a malformed answer may cut short.
    """
    faults: collections.Counter[str] = collections.Counter()
    steps: list[Step] = []
    for _ in range(rng.randint(1, 9)):
        pick = rng.random()
        if pick < 0.25:
            steps.append(running())
            continue
        kind = rng.choice(FAULT_KINDS)
        if kind == "malformed":
            steps += _malformed_streak(rng, completed, faults)
            steps.append(running())  # a well-formed answer ends the streak: never 4 in a row
            continue
        faults[kind] += 1
        steps.append(_fault(rng, sim, config, running, kind, faults))
    return steps, faults


def _malformed_streak(
    rng: random.Random, completed: dict[str, Any] | None, faults: collections.Counter[str]
) -> list[Step]:
    """One to three malformed answers in a row."""
    steps: list[Step] = []
    for _ in range(rng.randint(1, 3)):
        if completed is not None and rng.random() < 0.3:
            # A results body cut short: some events are published before it breaks off.
            text = json.dumps(completed).encode()
            steps.append(Step.raw(200, text[: rng.randint(1, max(1, len(text) - 1))]))
            faults["malformed (truncated results)"] += 1
        else:
            steps.append(rng.choice(MALFORMED_BODIES))
            faults["malformed"] += 1
    return steps


def _fault(
    rng: random.Random,
    sim: ChaosSimulator,
    config: Config,
    running: Callable[[], Step],
    kind: str,
    faults: collections.Counter[str],
) -> Step:
    """The answer for one fault ``kind`` other than a malformed body."""
    if kind.startswith("429"):
        return Step.throttle(kind.split()[-1] if "retry-after" in kind else None)
    if kind.isdigit():
        return Step.error(int(kind))
    if kind == "auto-retryable 400":
        return Step.error(400, "Try again", {"cdf-is-auto-retryable": "true"})
    if kind == "drop":
        return Step.drop()
    if kind == "slow":
        return Step.slow(rng.uniform(0.05, config.http_timeout_s / 2), running())
    if kind == "timeout":
        return Step.slow(config.slow_s, running())
    token_fault = rng.choice((None, Step.error(503), Step.throttle("0"), Step.drop()))
    if token_fault is not None:
        faults["token endpoint fault"] += 1
    return _expiring(sim, config.expire_age_s, running(), token_fault)
