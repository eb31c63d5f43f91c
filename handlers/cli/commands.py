"""``python main.py run``: the same flow once, from a terminal (contract, section 1); ``sweep`` and ``link`` beside it.

Polls until the run is finished (no budget; ``RUN_MAX_WAIT_S`` counts from the
start of the command). Exit 0: completed and published; 1: a ``run.failed``
event was emitted; 2: usage or configuration error; 3: events could not be
published (nothing is lost: run the command again).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from handlers.cli import display as progress
from handlers.cli import link, review, unlink
from handlers.core.deadline import Deadline
from handlers.core.errors import ConfigError, InvalidTrigger
from handlers.core.trigger import parse_fields, parse_sweep
from handlers.flow.runtime import Runtime
from handlers.flow.sweep import Sweeper, SweepOutcome
from handlers.process.logs import log_context
from handlers.process.settings import Settings
from handlers.process.shutdown import install as install_sigterm

EXIT = {"completed": 0, "failed": 1, "handed_back": 3}
SWEEP_EXIT = {"swept": 0, "failed": 1, "handed_back": 3}  # no deadline, so a sweep never continues
log = logging.getLogger("matchrelay")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python main.py", description="Relay one CDF entity matching run as events.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="poll one run until it is finished and publish its events")
    run.add_argument("--pipeline-id", required=True, help="the pipeline's id")
    run.add_argument("--run-id", required=True, help="the run's id (its jobId), or 'latest'")
    run.add_argument("--project", help="the CDF project (one of CDF_ALLOWED_PROJECTS; default CDF_PROJECT)")
    run.add_argument("--stdout", action="store_true", help="print each event as a JSON line instead of publishing")
    sweep = sub.add_parser("sweep", help="publish a run trigger for every run created in a window of time")
    sweep.add_argument("--pipeline-id", help="the pipeline's id (default: every pipeline of the project)")
    window = sweep.add_mutually_exclusive_group(required=True)
    window.add_argument("--window-s", type=int, help="the last whole window of this many seconds before now")
    window.add_argument("--from", dest="from_ms", type=int, help="the window's start, epoch ms (included); with --to")
    sweep.add_argument("--to", dest="to_ms", type=int, help="the window's end, epoch ms (excluded)")
    sweep.add_argument("--project", help="the CDF project (one of CDF_ALLOWED_PROJECTS; default CDF_PROJECT)")
    sweep.add_argument("--stdout", action="store_true", help="print each run trigger as a JSON line instead")
    link.add_parser(sub)
    unlink.add_parser(sub)
    review.add_parser(sub)
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)  # exits 2 on usage errors
    if args.command == "sweep":
        return sweep_main(args)
    if args.command == "link":
        return link.main(args)
    if args.command == "unlink":
        return unlink.main(args)
    if args.command == "review":
        return review.main(args)
    started = time.time()
    shown = progress.on_terminal(f"pipeline {args.pipeline_id} run {args.run_id}", events_to_stdout=args.stdout)
    try:
        settings = progress.settings_for(shown, to_stderr=args.stdout)
        trigger = parse_fields(
            {"pipelineId": args.pipeline_id, "runId": args.run_id, "project": args.project},
            default_project=settings.cdf_project,
            allowed=settings.allowed_projects,
        )
    except (ConfigError, InvalidTrigger) as exc:
        return progress.usage(exc)
    runtime = _runtime(settings, args, shown)
    with shown, log_context(project=trigger.project, pipelineId=trigger.pipeline_id, runId=trigger.run_id):
        outcome = runtime.relay.relay(trigger, budget_s=None, started_wall=started)
        shown.done(outcome.kind, polls=outcome.polls)
    level = logging.INFO if outcome.kind == "completed" else logging.WARNING
    log.log(level, "%s: %d events%s", outcome.kind, outcome.events, f" ({outcome.detail})" if outcome.detail else "")
    return EXIT[outcome.kind]


def sweep_main(args: argparse.Namespace) -> int:
    """``python main.py sweep``: one sweep with no deadline and no budget; exit codes as ``run``."""
    shown = progress.on_terminal(f"pipeline {args.pipeline_id}" if args.pipeline_id else "every pipeline", args.stdout)
    try:
        settings = progress.settings_for(shown, to_stderr=args.stdout)
        sweep = parse_sweep(
            _sweep_fields(args), default_project=settings.cdf_project, allowed=settings.allowed_projects
        )
        topic = "-" if args.stdout else settings.trigger_topic()
        if topic is None:
            raise ConfigError("RELAY_TRIGGER_TOPIC: required by sweep (or use --stdout)")
    except (ConfigError, InvalidTrigger) as exc:
        return progress.usage(exc)
    runtime = _runtime(settings, args, shown)
    with shown, log_context(project=sweep.project, pipelineId=sweep.pipeline_id):
        outcome = Sweeper(runtime.relay).sweep(sweep, None, Deadline.never(runtime.relay.clock.monotonic), topic)
        swept = outcome if isinstance(outcome, SweepOutcome) and outcome.kind == "swept" else None
        shown.done(outcome.kind, detail=swept.summary() if swept else "")
    if swept is not None:
        log.info("%s", swept.summary(), extra={"fields": swept.fields()})
    else:
        log.warning("%s%s", outcome.kind, f" ({outcome.detail})" if outcome.detail else "")
    return SWEEP_EXIT[outcome.kind]


def _runtime(settings: Settings, args: argparse.Namespace, shown: progress.Display) -> Runtime:
    install_sigterm(exit_by_default=False)
    runtime = Runtime.build(settings, stdout=sys.stdout if args.stdout else None)
    progress.attach(runtime.relay, shown)
    return runtime


def _sweep_fields(args: argparse.Namespace) -> dict[str, object]:
    """The sweep the options name, as a trigger body, so the command validates exactly as the function does."""
    if args.window_s is not None:
        if args.to_ms is not None:
            raise InvalidTrigger("--to goes with --from, not with --window-s", message_id="")
        window: dict[str, int] = {"windowS": args.window_s}
    elif args.to_ms is None:
        raise InvalidTrigger("--from needs --to", message_id="")
    else:
        window = {"from": args.from_ms, "to": args.to_ms}
    fields: dict[str, object] = {"runsCreated": window, "project": args.project}
    if args.pipeline_id is not None:
        fields["pipelineId"] = args.pipeline_id
    return fields
