"""``python main.py review``: people's decisions on one pipeline's matches, once, from a terminal (section 10).

``--confirm S:T`` and ``--reject S:T`` (any number, in order) name a source and
a target by id (an integer) or external id (any other text), split at the first
``:``; ``--file F`` reads JSON lines, each one decision as a decisions message
holds it (for external ids with a ``:``). The decisions go into the pipeline's
lists, the links of pairs named by ids are written or put back, and
``review.applied`` goes to ``REVIEW_TOPIC`` (one JSON line on stdout under
``--stdout``). Exit codes as ``link``: 0 applied; 1 ended with a reason; 2 usage
or configuration error (an invalid decision too); 3 handed back (run it again).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from typing import Any

from handlers.cli import display as progress
from handlers.core.errors import ConfigError, InvalidDecision
from handlers.core.review import read_decisions
from handlers.flow.review import summary_line
from handlers.flow.runtime import Runtime
from handlers.process.logs import log_context
from handlers.process.shutdown import install as install_sigterm

EXIT = {"applied": 0, "refused": 1, "handed_back": 3}
log = logging.getLogger("matchrelay")


class _Decide(argparse.Action):
    """``--confirm`` and ``--reject`` into one list, in the order given."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: str | None = None) -> None:
        verdict = "confirm" if option == "--confirm" else "reject"
        namespace.decisions = [*(namespace.decisions or []), (verdict, str(values))]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``review`` command's options, beside ``link`` and ``unlink``."""
    review = commands.add_parser("review", help="take people's confirm and reject decisions into a pipeline and CDF")
    review.add_argument("--pipeline-id", required=True, help="the pipeline's id")
    review.add_argument("--project", help="the CDF project (one of CDF_ALLOWED_PROJECTS; default CDF_PROJECT)")
    review.add_argument("--confirm", action=_Decide, metavar="S:T", help="confirm the pair source S, target T")
    review.add_argument("--reject", action=_Decide, metavar="S:T", help="reject the pair source S, target T")
    review.add_argument("--file", help="JSON lines, each a decision as a decisions message holds it")
    review.add_argument("--dry-run", action="store_true", help="count what would change, write nothing")
    review.add_argument("--stdout", action="store_true", help="print review.applied as a JSON line instead")
    review.set_defaults(decisions=None)


def main(args: argparse.Namespace) -> int:
    """One message's decisions with no deadline; exit codes as ``link``."""
    shown = progress.on_terminal(f"review pipeline {args.pipeline_id}", events_to_stdout=args.stdout)
    try:
        settings = progress.settings_for(shown, to_stderr=args.stdout)
        body = {"project": args.project, "pipelineId": args.pipeline_id, "decisions": _decisions(args)}
        decisions = read_decisions(body, default_project=settings.cdf_project, allowed=settings.allowed_projects)
        install_sigterm(exit_by_default=False)
        linker = Runtime.build(settings, stdout=sys.stdout if args.stdout else None).linker
    except (ConfigError, InvalidDecision, OSError, ValueError) as exc:
        return progress.usage(exc if isinstance(exc, ConfigError | InvalidDecision) else InvalidDecision(str(exc)))
    linker.progress = shown
    with shown, log_context(project=decisions.project, pipelineId=decisions.pipeline_id):
        outcome = linker.review(decisions, dry_run=args.dry_run)
        shown.done(outcome.kind, detail=outcome.detail)
    level, message, fields = summary_line(outcome)
    log.log(level, message, extra={"fields": fields})
    return EXIT.get(outcome.kind, 3)


def _decisions(args: argparse.Namespace) -> list[Any]:
    """The decisions as a message holds them: the options' in order, then the file's lines."""
    given = [_pair(verdict, text) for verdict, text in args.decisions or []]
    if args.file:
        with open(args.file, encoding="utf-8") as lines:
            given += [json.loads(line) for line in lines if line.strip()]
    return given


def _pair(verdict: str, text: str) -> dict[str, Any]:
    """``S:T`` as a decision: each side an id when it is an integer, else an external id."""
    source, _, target = text.partition(":")
    named: dict[str, Any] = {"decision": verdict}
    for side, value in (("source", source), ("target", target)):
        if re.fullmatch(r"[0-9]{1,16}", value):
            named[f"{side}Id"] = int(value)
        else:
            named[f"{side}ExternalId"] = value
    return named
