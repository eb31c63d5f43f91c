"""The demo's flow: start everything, publish triggers, show what a subscriber receives and the links the link
made, stop everything.

Exit 0 when every expected event arrived; 1 on any failure (a process that does
not start or dies, an unexpected ``run.failed``, events still missing after the
wait), with one line saying what, and where the logs are.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from demo.bus import ERRORS, EVENTS, GCP_PROJECT, TRIGGER, Bus, Received, topic_path
from demo.links import LINK_ENV, linked_events, links, outcome, unlinked
from demo.show import LogStream, compact, event_line, report, summary
from demo.stack import READER_TOKEN, DemoError, Stack
from sim.data import SWEEP_WINDOW_MS

FIRST = ({"pipelineId": 1, "runId": 456}, {"pipelineId": 2, "runId": 789})
LATEST = {"pipelineId": 1, "runId": "latest"}
COMPLETED, FAILED = "demo/1/456/run", "demo/2/789/run/failed/run_failed"  # contract v2: failures name their reason
# A sweep of every pipeline over one hour: pipeline 3's scheduled runs 901 to 903 were created in it (900 before,
# 904 exactly at its end, so in the next window); pipeline 4 has no run in it.
SWEEP = {"runsCreated": {"from": SWEEP_WINDOW_MS[0], "to": SWEEP_WINDOW_MS[1]}}
SWEPT = ("demo/3/901", "demo/3/902", "demo/3/903")
TOPICS = (topic_path(EVENTS), topic_path(ERRORS))
WAIT_S = 60.0
WIDTHS = (len("com.cognite.entitymatching.suggestedrule"), len("suggestedrule/0"), len("demo/1/456/suggestedrule/0"))
DEPLOYMENT = {  # what a deployment sets; the addresses are added once known
    "CDF_PROJECT": "demo",
    "IDP_CLIENT_ID": "matchrelay",
    "IDP_CLIENT_SECRET": "s3cret",  # the simulator's, not a real one
    "RELAY_TOPIC": topic_path(EVENTS),
    "RELAY_ERROR_TOPIC": topic_path(ERRORS),
    "RELAY_TRIGGER_TOPIC": topic_path(TRIGGER),  # a sweep's run triggers come back to the function by its push
    "POLL_INITIAL_DELAY_S": "0.5",
    "POLL_MAX_DELAY_S": "2",
}
OURS = ("CDF_", "IDP_", "RELAY_", "POLL_", "RUN_", "HTTP_", "LINK_", "LOG_LEVEL", "PUBSUB_EMULATOR_HOST")


def function_env(cdf_url: str, token_url: str, emulator_host: str) -> dict[str, str]:
    """The function's environment: the caller's without any matchrelay setting, plus the deployment's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OURS)}
    return {**env, **DEPLOYMENT, "CDF_URL": cdf_url, "IDP_TOKEN_URL": token_url, "PUBSUB_EMULATOR_HOST": emulator_host}


@dataclass
class Subscriber:
    """Pulls the event and error subscriptions and keeps every message, in arrival order."""

    bus: Bus
    stack: Stack
    received: list[Received] = field(default_factory=list)

    def copies(self, ce_id: str, kind: str) -> int:
        return sum(1 for r in self.received if r.id == ce_id and r.short_type == kind)

    def complete(self, times: int, run: str = "demo/1/456") -> bool:
        """The run's ``run.completed`` came ``times`` times, and so did every match and rule it counts."""
        done = [r for r in self.received if r.id == f"{run}/run" and r.short_type == "run.completed"]
        if len(done) < times or not isinstance(done[0].data, dict):
            return False
        for kind in ("match", "suggestedRule", "generatedRule"):
            for i in range(int(done[0].data.get(f"{kind}Count") or 0)):
                if self.copies(f"{run}/{kind.lower()}/{i}", kind.lower()) < times:
                    return False
        return True

    def pull(self, strict: bool = True) -> list[Received]:
        """One pull; ``strict``: a ``run.failed`` other than run 789's, or a dead process, fails the demo."""
        got = self.bus.pull()
        self.received += got
        for event in got if strict else ():
            if event.short_type == "run.failed" and event.id != FAILED:
                reason = event.data.get("reason") if isinstance(event.data, dict) else None
                raise DemoError(f"unexpected run.failed ({reason}): {event.id} {compact(event.data)}")
        if (dead := self.stack.dead()) is not None:
            raise dead.failed("stopped unexpectedly")
        return got

    def wait(self, what: str, done: Callable[[], bool], seconds: float = WAIT_S) -> None:
        """Pull until ``done()`` and then until the subscriptions are empty; fail after ``seconds``."""
        deadline, quiet = time.monotonic() + seconds, 0
        while quiet < 2:
            got = self.pull()
            finished = done()
            quiet = quiet + 1 if finished and not got else 0
            if time.monotonic() > deadline:
                if finished:
                    return
                raise DemoError(f"still waiting after {seconds:.0f} s for {what}; see the function's log")
            if not got:
                time.sleep(0.2)


def start(stack: Stack) -> tuple[Subscriber, dict[str, str]]:
    """Emulator, simulator, function, link, topics and subscriptions; the subscriber and the function's env."""
    print("starting the Pub/Sub emulator, the CDF simulator, the function and the link ...", flush=True)
    emulator_host = stack.start_emulator()
    cdf_url, token_url = stack.start_simulator()
    env = function_env(cdf_url, token_url, emulator_host)
    function_url = stack.start_function(env)
    link_url = stack.start_function({**env, **LINK_ENV}, "on_run_completed", "the link")
    bus = Bus(emulator_host)
    subscriber = Subscriber(bus, stack)
    bus.create(push_endpoint=function_url, link_endpoint=link_url)
    print(f"  Pub/Sub emulator  {emulator_host}  (GCP project {GCP_PROJECT})")
    print(f"  CDF simulator     {cdf_url}  (CDF project demo, scenario demo)")
    print(f"  function          {function_url}  (main.on_run_message under functions-framework)")
    print(f"  link              {link_url}  (main.on_run_completed, LINK_PIPELINES={LINK_ENV['LINK_PIPELINES']})")
    print(f"  {TRIGGER} pushes to the function, {EVENTS}' run.completed to the link; the subscriber pulls")
    print(f"  {EVENTS} and {ERRORS}", flush=True)
    return subscriber, env


def show_link(subscriber: Subscriber, cdf_url: str, times: int) -> None:
    """Wait for run 456's ``times``-th run.linked, say what it counts, and what CDF holds now."""
    subscriber.wait(f"run.linked of run 456 ({times})", lambda: len(linked_events(subscriber.received)) >= times)
    print(f"  {outcome(linked_events(subscriber.received)[-1])}")
    print("  run 456's time series in CDF now:")
    print("\n".join(links(cdf_url, READER_TOKEN)), flush=True)


def demonstrate(subscriber: Subscriber, env: dict[str, str]) -> None:
    """Publish the triggers and wait until every event they owe has arrived; link run 456, then undo its links."""
    bus, cdf_url = subscriber.bus, env["CDF_URL"]
    print("run 456's time series in CDF before the link:")
    print("\n".join(links(cdf_url, READER_TOKEN)), flush=True)
    for body in FIRST:
        print(f"published trigger {json.dumps(body)} (message id {bus.publish(body)})", flush=True)
    print("waiting: run 456 answers Queued, Running, Running, Completed; run 789 answers Running, Failed ...")
    began = time.monotonic()
    subscriber.wait(
        "run.completed of run 456 with all its events, and run.failed of run 789",
        lambda: subscriber.complete(1) and subscriber.copies(FAILED, "run.failed") > 0,
    )
    print(f"  {len(subscriber.received)} messages in {time.monotonic() - began:.1f} s")
    print("waiting: the link reads run 456 again from CDF and links the matches it is confident of")
    show_link(subscriber, cdf_url, 1)
    print(f"published trigger {json.dumps(LATEST)} (message id {bus.publish(LATEST)})", flush=True)
    print("waiting: the function resolves 'latest' to run 456, so the same events come again, with the same ce-ids")
    before, began = len(subscriber.received), time.monotonic()
    subscriber.wait("run 456's events for the trigger with runId 'latest'", lambda: subscriber.complete(2))
    print(f"  {len(subscriber.received) - before} messages in {time.monotonic() - began:.1f} s", flush=True)
    print("waiting: the run.completed came again, so the link runs again: every link is in place, nothing written")
    show_link(subscriber, cdf_url, 2)
    undo(env)
    print(f"published sweep {json.dumps(SWEEP)} (message id {bus.publish(SWEEP)})", flush=True)
    print(
        "waiting: the function lists every pipeline and its runs, publishes a run trigger for each of runs 901, 902"
        " and 903 (created in the window) to the trigger topic, which pushes them back to the function"
    )
    before, began = len(subscriber.received), time.monotonic()
    subscriber.wait("the events of runs 901, 902 and 903", lambda: all(subscriber.complete(1, run) for run in SWEPT))
    print(f"  {len(subscriber.received) - before} messages in {time.monotonic() - began:.1f} s", flush=True)


def undo(env: dict[str, str]) -> None:
    """``python main.py unlink`` of run 456, as a user runs it: what it says, and the links it leaves."""
    command = [sys.executable, "main.py", "unlink", "--pipeline-id", "1", "--run-id", "456", "--stdout"]
    print(f"running: {' '.join(['python', *command[1:]])}  (puts back what the link of run 456 wrote)", flush=True)
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(command, cwd=root, env={**env, **LINK_ENV}, capture_output=True, text=True, timeout=WAIT_S)
    if result.returncode != 0:
        raise DemoError(f"unlink exited {result.returncode}: {result.stderr[-2000:]}")
    print(f"  {unlinked(json.loads(result.stdout.splitlines()[-1]))}")
    print("  run 456's time series in CDF after the unlink:")
    print("\n".join(links(env["CDF_URL"], READER_TOKEN)), flush=True)


def keep_running(subscriber: Subscriber, env: dict[str, str]) -> None:
    """Leave everything up, say how to use it, and print new events until Ctrl-C."""
    print("\n--keep-running: everything stays up until Ctrl-C. Publish a trigger with gcloud:")
    endpoint = f"http://{subscriber.bus.host}/"
    print(f"  export CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB={endpoint} CLOUDSDK_AUTH_DISABLE_CREDENTIALS=true")
    print(f"  gcloud pubsub topics publish {topic_path(TRIGGER)} --message='{json.dumps(FIRST[0])}'")
    print(f"  gcloud pubsub topics publish {topic_path(TRIGGER)} --attribute=pipelineId=2,runId=789")
    print(f"  gcloud pubsub topics publish {topic_path(TRIGGER)} --message='{json.dumps(SWEEP)}'")
    print("or run the flow once, events on stdout, with the function's environment:")
    for name in sorted(k for k in env if k.startswith(OURS)):
        print(f"  export {name}={env[name]}")
    print("  python main.py run --pipeline-id 1 --run-id 456 --stdout")
    print("  python main.py link --pipeline-id 1 --run-id 456 --dry-run --stdout")
    print("  python main.py unlink --pipeline-id 1 --run-id 456 --dry-run --stdout")
    print(f"  python main.py sweep --from {SWEEP_WINDOW_MS[0]} --to {SWEEP_WINDOW_MS[1]} --stdout")
    print("new events, as the subscriber receives them:", flush=True)
    while True:
        for event in subscriber.pull(strict=False):
            print(event_line(event, WIDTHS), flush=True)
        time.sleep(0.3)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM (or SIGINT, even where a shell ignored it) stops everything as Ctrl-C does


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m demo", description="matchrelay end to end on this machine: emulator, CDF simulator, function."
    )
    parser.add_argument("--verbose", action="store_true", help="stream the function's, simulator's and emulator's logs")
    parser.add_argument("--keep-running", action="store_true", help="leave everything up until Ctrl-C")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):  # CDF names are not ASCII; never fail on a narrow terminal
        sys.stdout.reconfigure(errors="backslashreplace")
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    logs = Path(tempfile.mkdtemp(prefix="matchrelay-demo-"))
    print(f"logs (function, link, simulator, emulator): {logs}", flush=True)
    stack, code = Stack(logs), 1
    names = {"function": "function.log", "link": "link.log", "sim": "simulator.log", "emulator": "emulator.log"}
    stream = LogStream({name: logs / file for name, file in names.items()}).start() if args.verbose else None
    subscriber: Subscriber | None = None
    try:
        subscriber, env = start(stack)
        demonstrate(subscriber, env)
        print("\nwhat the subscriber received (one line per ce-id):")
        print("\n".join([*report(subscriber.received, TOPICS), summary(subscriber.received)]), flush=True)
        code = 0
        if args.keep_running:
            keep_running(subscriber, env)
    except DemoError as exc:
        code = 1
        if subscriber is not None and subscriber.received:
            print("\n".join(["\nreceived so far:", *report(subscriber.received, TOPICS)]), flush=True)
        print(f"matchrelay demo failed: {exc}", file=sys.stderr, flush=True)
    except Exception as exc:  # anything else (a Pub/Sub call refused, ...): one line, not a traceback
        code = 1
        print(f"matchrelay demo failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr, flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not leave processes behind
            signal.signal(signum, signal.SIG_IGN)
        if subscriber is not None:
            subscriber.bus.close()
        stack.stop()
        if stream is not None:
            stream.stop()
        print(f"{'done' if code == 0 else 'FAILED'}: everything stopped; logs in {logs}", flush=True)
    return code
