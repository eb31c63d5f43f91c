"""A matchrelay subscriber: print each match scoring at least ``--min-score``, once.

    python examples/subscriber.py projects/P/subscriptions/S --min-score 0.8 [--timeout SECONDS] [--runs N]

It streams from a subscription on matchrelay's events topic (google-cloud-pubsub's
``SubscriberClient.subscribe``), and shows what every subscriber has to do:

- **deduplicate by ``ce-id``**: a redelivered trigger publishes the same events
  again, and Pub/Sub itself delivers at least once;
- **ack every message**, the duplicates and the events it does not print too;
- **know when a run is complete from counts, not order**: ``run.completed`` is
  published last, but may be *received* before some of its run's events. A run
  is complete once ``run.completed`` and every event it announces (``matchCount``
  matches, ``suggestedRuleCount`` and ``generatedRuleCount`` rules, a split rule
  once all its ``partCount`` parts are in) have been seen, or once ``run.failed``.

It stops when ``--runs`` runs (default 1; 0: no limit) are complete, or when
``--timeout`` seconds have passed, whichever comes first. Exit status: 0 when it
stopped because the runs were complete (or at the timeout with ``--runs 0``), 1
when the timeout came first, 2 on usage errors.

stdout: one line per match, tab-separated: score, matchType, source, target,
ce-id (source and target by externalId, else id). stderr: progress and a summary.
Set ``PUBSUB_EMULATOR_HOST`` to use the Pub/Sub emulator.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from google.cloud import pubsub_v1

PREFIX = "com.cognite.entitymatching."


@dataclass
class Run:
    """What has been seen of one run, to tell when it is complete."""

    announced: dict[str, int] | None = None  # run.completed's counts, once it has arrived
    failed: bool = False
    matches: set[int] = field(default_factory=set)
    rules: dict[tuple[str, int], set[int]] = field(default_factory=dict)  # (type, ruleIndex) -> parts seen
    part_counts: dict[tuple[str, int], int] = field(default_factory=dict)

    def add_rule(self, kind: str, data: dict[str, Any]) -> None:
        key = (kind, int(data["ruleIndex"]))
        self.rules.setdefault(key, set()).add(int(data.get("part", 0)))
        self.part_counts[key] = int(data.get("partCount", 1))

    def whole_rules(self, kind: str) -> int:
        return sum(1 for key, parts in self.rules.items() if key[0] == kind and len(parts) == self.part_counts[key])

    @property
    def complete(self) -> bool:
        if self.failed:
            return True
        if self.announced is None:
            return False
        return (
            len(self.matches) == self.announced["matchCount"]
            and self.whole_rules("suggestedrule") == self.announced["suggestedRuleCount"]
            and self.whole_rules("generatedrule") == self.announced["generatedRuleCount"]
        )


@dataclass
class Subscriber:
    """The callback's state; every method runs under ``lock`` (callbacks come from a thread pool)."""

    min_score: float
    runs_wanted: int
    seen: set[str] = field(default_factory=set)  # ce-ids; a real subscriber keeps these in its store
    runs: dict[str, Run] = field(default_factory=dict)
    done_runs: set[str] = field(default_factory=set)
    printed: int = 0
    duplicates: int = 0
    satisfied: bool = False  # the runs wanted are complete
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def __call__(self, message: Any) -> None:
        """Handle one message and ack it, whatever it is (nothing here gets better by redelivery)."""
        try:
            with self.lock:
                self.handle(dict(message.attributes), message.data)
        except (ValueError, KeyError, TypeError) as exc:  # not JSON, or not the documented shape
            print(f"skipped a malformed event {message.attributes.get('ce-id')}: {exc!r}", file=sys.stderr)
        finally:
            message.ack()

    def handle(self, attributes: dict[str, str], body: bytes) -> None:
        event_id, event_type = attributes.get("ce-id"), attributes.get("ce-type", "")
        if event_id is None or not event_type.startswith(PREFIX):
            print(f"skipped a message that is not a matchrelay event ({len(body)} bytes)", file=sys.stderr)
            return
        if event_id in self.seen:
            self.duplicates += 1
            return
        self.seen.add(event_id)
        data = json.loads(body)
        kind = event_type.removeprefix(PREFIX)
        run_key = "/".join(attributes.get(a, "?") for a in ("ce-cdfproject", "ce-pipelineid", "ce-runid"))
        if "ce-runid" not in attributes:  # an invalid trigger: no run, its own id
            run_key = event_id
        run = self.runs.setdefault(run_key, Run())
        if kind == "match":
            run.matches.add(int(data["matchIndex"]))
            score = data.get("score")
            if isinstance(score, int | float) and score >= self.min_score:
                self.print_match(event_id, data)
        elif kind in ("suggestedrule", "generatedrule"):
            run.add_rule(kind, data)
        elif kind == "run.completed":
            run.announced = {k: int(data[k]) for k in ("matchCount", "suggestedRuleCount", "generatedRuleCount")}
            if data.get("errors"):
                print(f"run {run_key} completed with errors: {data['errors']}", file=sys.stderr)
        elif kind == "run.failed":
            run.failed = True
            print(f"run {run_key} failed ({data.get('reason')}): {data.get('errorMessage')}", file=sys.stderr)
        if run.complete and run_key not in self.done_runs:
            self.done_runs.add(run_key)
            if not run.failed:
                print(f"run {run_key} complete: {len(run.matches)} matches", file=sys.stderr)
            if self.runs_wanted and len(self.done_runs) >= self.runs_wanted:
                self.satisfied = True
                self.stop.set()

    def print_match(self, event_id: str, data: dict[str, Any]) -> None:
        source = data.get("sourceExternalId") if data.get("sourceExternalId") is not None else data.get("sourceId")
        target = data.get("targetExternalId") if data.get("targetExternalId") is not None else data.get("targetId")
        print(f"{data['score']:.3f}\t{data.get('matchType')}\t{source}\t{target}\t{event_id}", flush=True)
        self.printed += 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Print matchrelay matches scoring at least --min-score, once each.")
    parser.add_argument("subscription", help="projects/P/subscriptions/S, on matchrelay's events topic")
    parser.add_argument("--min-score", type=float, required=True, help="print matches with at least this score")
    parser.add_argument("--timeout", type=float, help="stop after this many seconds (default: no limit)")
    parser.add_argument("--runs", type=int, default=1, help="stop once this many runs are complete (0: no limit)")
    args = parser.parse_args(argv)
    if not args.subscription.startswith("projects/") or "/subscriptions/" not in args.subscription:
        parser.error("the subscription must be a full path: projects/P/subscriptions/S")

    state = Subscriber(args.min_score, args.runs)
    subscriber = pubsub_v1.SubscriberClient()
    flow = pubsub_v1.types.FlowControl(max_messages=1000)
    with subscriber:
        future = subscriber.subscribe(args.subscription, state, flow_control=flow, await_callbacks_on_shutdown=True)
        future.add_done_callback(lambda _: state.stop.set())  # the stream failed (e.g. no such subscription)
        with contextlib.suppress(KeyboardInterrupt):
            state.stop.wait(args.timeout)
        future.cancel()  # messages received but not handled yet go back to Pub/Sub at once
        try:
            future.result()
        except Exception as exc:
            print(f"streaming pull failed: {exc}", file=sys.stderr)
            return 1
    with state.lock:
        print(
            f"{len(state.seen)} events, {state.duplicates} duplicates skipped, {state.printed} matches printed, "
            f"{len(state.done_runs)} runs complete",
            file=sys.stderr,
        )
        return 0 if state.satisfied or args.runs == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
