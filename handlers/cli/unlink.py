"""``python main.py unlink``: put back what one run's link wrote, and nothing changed since (contract, section 9).

Lists the items whose ``matchrelay:run`` names the run, puts back each one whose
link is still the run's (``--below S``: only those the run scored below S),
with ``--reject`` adds the pairs put back to the pipeline's ``rejectedMatches``,
and publishes ``run.unlinked`` to ``LINK_TOPIC`` (one JSON line on stdout under
``--stdout``). No deadline. Exit codes as ``link``: 0 ``run.unlinked`` is out
with no reason; 1 it is out with a reason; 2 usage or configuration error; 3 it
could not finish or be published (nothing is lost: run the command again, it
goes on from what CDF holds).
"""

from __future__ import annotations

import argparse
import logging
import math

from handlers.cli import link
from handlers.core.errors import InvalidTrigger
from handlers.flow.unlink import UnlinkOutcome, UnlinkRequest
from handlers.process.logs import log_context

EXIT = {"unlinked": 0, "refused": 1, "handed_back": 3}
log = logging.getLogger("matchrelay")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``unlink`` command's options, beside ``link``."""
    unlink = commands.add_parser("unlink", help="put back what one run's link wrote to CDF, and nothing changed since")
    unlink.add_argument("--pipeline-id", required=True, help="the pipeline's id")
    unlink.add_argument("--run-id", required=True, help="the run's id (its jobId)")
    unlink.add_argument("--project", help="the CDF project (one of CDF_ALLOWED_PROJECTS; default CDF_PROJECT)")
    unlink.add_argument("--below", type=float, help="only links the run scored below this (a confirmed one: none)")
    unlink.add_argument("--reject", action="store_true", help="also add each pair put back to rejectedMatches")
    unlink.add_argument("--dry-run", action="store_true", help="decide and count, write nothing")
    unlink.add_argument("--stdout", action="store_true", help="print run.unlinked as a JSON line instead of publishing")


def main(args: argparse.Namespace) -> int:
    """One unlink with no deadline; exit codes as ``link``."""
    title = f"undo pipeline {args.pipeline_id} run {args.run_id}" + (" (dry run)" if args.dry_run else "")

    def check() -> None:
        if args.below is not None and not math.isfinite(args.below):
            raise InvalidTrigger("--below: a finite number", message_id="")

    ready = link.prepared(args, title, check)
    if isinstance(ready, int):
        return ready
    shown, linker = ready.shown, ready.linker
    request = UnlinkRequest(ready.project, ready.pipeline_id, ready.run_id, args.below, args.reject, args.dry_run)
    with shown, log_context(project=request.project, pipelineId=request.pipeline_id, runId=request.run_id):
        outcome = linker.unlink(request)
        shown.done(outcome.kind, detail=link.detail(outcome))
    _summarize(outcome)
    return EXIT.get(outcome.kind, 3)


def _summarize(outcome: UnlinkOutcome) -> None:
    """The command's last log line, with every count as a field."""
    n, extra = outcome.counts, {"fields": outcome.fields()}
    if outcome.kind == "unlinked":
        done = "would be put back, nothing written" if outcome.dry_run else f"put back ({n.written} written now)"
        log.info("unlinked: %d items %s", n.unlinked + n.restored, done, extra=extra)
    else:
        level = logging.WARNING if outcome.kind == "refused" else logging.ERROR
        log.log(level, "%s (%s): %s", outcome.kind, outcome.reason, outcome.detail, extra=extra)
