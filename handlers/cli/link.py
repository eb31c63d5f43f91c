"""``python main.py link``: the link of one run (contract, section 8), once, from a terminal.

Reads the pipeline, the run's matches and the sources' links from CDF, writes
the missing links (none under ``--dry-run``) and publishes ``run.linked`` to
``LINK_TOPIC`` (one JSON line on stdout under ``--stdout``, the logs on stderr
then). No deadline: a terminal waits as long as the link takes, and a run still
going is polled until it is finished, as ``run`` does. Exit 0: ``run.linked``
is out with no reason; 1: it is out with a reason (``unsupported_resource``, or
CDF refused); 2: usage or configuration error; 3: it could not be published
(nothing is lost: CDF holds the links written, run the command again).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import NamedTuple

from handlers.cli import display as progress
from handlers.core.errors import ConfigError, InvalidTrigger
from handlers.core.link_events import LinkRequest
from handlers.core.trigger import parse_fields
from handlers.flow.invocation import Counted
from handlers.flow.linker import Linker, LinkOutcome
from handlers.flow.runtime import Runtime
from handlers.process.logs import log_context
from handlers.process.shutdown import install as install_sigterm

EXIT = {"linked": 0, "refused": 1, "handed_back": 3}
log = logging.getLogger("matchrelay")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``link`` command's options, beside ``run`` and ``sweep``."""
    link = commands.add_parser("link", help="apply one completed run's confident matches to CDF as asset links")
    link.add_argument("--pipeline-id", required=True, help="the pipeline's id")
    link.add_argument("--run-id", required=True, help="the run's id (its jobId)")
    link.add_argument("--project", help="the CDF project (one of CDF_ALLOWED_PROJECTS; default CDF_PROJECT)")
    link.add_argument("--dry-run", action="store_true", help="decide and count, write nothing (as LINK_DRY_RUN=true)")
    link.add_argument("--stdout", action="store_true", help="print run.linked as a JSON line instead of publishing")


def prepared(args: argparse.Namespace, title: str, check: Callable[[], None] = lambda: None) -> Prepared | int:
    """What a command on one run's links needs (the display, the linker, the run's coordinates), or the exit code
    of a usage or configuration error; ``check`` raises ``InvalidTrigger`` for an option of the command's own."""
    shown = progress.on_terminal(title, events_to_stdout=args.stdout)
    try:
        settings = progress.settings_for(shown, to_stderr=args.stdout)
        fields = {"pipelineId": args.pipeline_id, "runId": args.run_id, "project": args.project}
        trigger = parse_fields(fields, default_project=settings.cdf_project, allowed=settings.allowed_projects)
        if not isinstance(trigger.run_id, int):
            raise InvalidTrigger(f"--run-id: {args.command} names its run by id, not 'latest'", message_id="")
        check()
        install_sigterm(exit_by_default=False)
        linker = Runtime.build(settings, stdout=sys.stdout if args.stdout else None).linker  # LINK_TOPIC checked
    except (ConfigError, InvalidTrigger) as exc:
        return progress.usage(exc)
    linker.progress = shown
    return Prepared(shown, linker, trigger.project, trigger.pipeline_id, trigger.run_id)


class Prepared(NamedTuple):
    shown: progress.Display
    linker: Linker
    project: str
    pipeline_id: int
    run_id: int


def main(args: argparse.Namespace) -> int:
    """One link with no deadline; exit codes as ``run`` (see the module's docstring)."""
    title = f"pipeline {args.pipeline_id} run {args.run_id}" + (" (dry run)" if args.dry_run else "")
    ready = prepared(args, title)
    if isinstance(ready, int):
        return ready
    shown, linker = ready.shown, ready.linker
    request = LinkRequest(ready.project, ready.pipeline_id, ready.run_id, dry_run=True if args.dry_run else None)
    with shown, log_context(project=request.project, pipelineId=request.pipeline_id, runId=request.run_id):
        outcome = linker.link(request)
        shown.done(outcome.kind, detail=detail(outcome))
    _summarize(outcome)
    return EXIT.get(outcome.kind, 3)


def detail(outcome: Counted) -> str:
    """What the display's last line adds to the counts: a dry run, or why the link (or the undo) ended early."""
    if outcome.kind in ("linked", "unlinked"):
        return "dry run: nothing written" if outcome.dry_run else ""
    return f"{outcome.reason}: {outcome.detail}" if outcome.detail else str(outcome.reason)


def _summarize(outcome: LinkOutcome) -> None:
    """The command's last log line, with every count as a field (the function's summary line names them alike)."""
    n, extra = outcome.counts, {"fields": outcome.fields()}
    if outcome.kind == "linked":
        done = "would be linked, nothing written" if outcome.dry_run else f"linked ({n.written} written now)"
        log.info("linked: %d sources %s", n.linked, done, extra=extra)
    else:
        level = logging.WARNING if outcome.kind == "refused" else logging.ERROR
        log.log(level, "%s (%s): %s", outcome.kind, outcome.reason, outcome.detail, extra=extra)
