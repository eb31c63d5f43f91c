"""What one process holds: settings, the HTTP pool, the token cache, the sink.

Built once per process by ``main`` (lazily, after gunicorn has forked), shared by
every invocation. ``handle_event`` is the function's whole job for one
CloudEvent: read the trigger, relay the run, log one summary line.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from handlers.cdf import CdfClient, TokenSource, make_http
from handlers.errors import HandBack
from handlers.logs import log_context
from handlers.poll import Clock
from handlers.publish import PubSubSink, Sink, StdoutSink
from handlers.relay import Outcome, Relay, Topics
from handlers.settings import Settings
from handlers.shutdown import STOP
from handlers.trigger import BadTrigger, parse_event

log = logging.getLogger("matchrelay")


@dataclass
class Runtime:
    settings: Settings
    relay: Relay

    @classmethod
    def build(cls, settings: Settings, stdout: IO[str] | None = None, sink: Sink | None = None) -> Runtime:
        """Wire the real edges: httpx to CDF, Pub/Sub (or ``stdout``), the system clock."""
        http = make_http(settings)
        cdf = CdfClient(settings, http, TokenSource(settings, http))
        if stdout is not None:
            chosen, topics = sink or StdoutSink(stdout), Topics("-", "-")
        else:
            chosen, topics = sink or PubSubSink(), Topics(settings.topic(), settings.error_topic())
        clock = Clock(time.monotonic, STOP.wait, random.Random())  # SIGTERM wakes the poller's sleep
        return cls(settings, Relay(settings, cdf, chosen, clock, topics=topics))

    def handle_event(self, event_id: str, data: Any) -> Outcome:
        """One trigger message, start to end; never raises for anything the message or CDF did."""
        started = time.monotonic()
        if isinstance(data, bytes | str):  # a CloudEvent without a JSON content type
            data = _loads(data)
        message = data.get("message") if isinstance(data, dict) else None
        message_id = str(message.get("messageId") or event_id) if isinstance(message, dict) else event_id
        with log_context(messageId=message_id):
            try:
                trigger = parse_event(
                    event_id, data, default_project=self.settings.cdf_project, allowed=self.settings.allowed_projects
                )
            except BadTrigger as exc:
                outcome = self._guard(self.relay.invalid, exc)
                _summarize(outcome, started)
                return outcome
            with log_context(project=trigger.project, pipelineId=trigger.pipeline_id, runId=trigger.run_id):
                outcome = self._guard(self.relay.relay, trigger, self.settings.poll_budget_s)
                with log_context(runId=outcome.run_id):
                    _summarize(outcome, started)
                return outcome

    @staticmethod
    def _guard(work: Callable[..., Outcome], *args: Any) -> Outcome:
        try:
            return work(*args)
        except HandBack as exc:
            return Outcome("handed_back", exc.code, detail=str(exc))


def _loads(data: bytes | str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _summarize(outcome: Outcome, started: float) -> None:
    """One line per invocation: how it ended, how many polls, retries and events, how long."""
    fields = {
        "outcome": outcome.kind,
        "reason": outcome.reason,
        "polls": outcome.polls,
        "retries": outcome.retries,
        "events": outcome.events,
        "seconds": round(time.monotonic() - started, 3),
    }
    if outcome.kind == "handed_back":
        # A run still going is routine (INFO); a publish that failed is not.
        # A run still going (budget spent, or the instance stopping) is routine: INFO. A failed publish is not.
        level = logging.ERROR if outcome.reason == "publish_failed" else logging.INFO
        message = f"handed the message back for redelivery: {outcome.detail}"
    elif outcome.kind == "failed":
        level, message = logging.WARNING, f"published run.failed ({outcome.reason}): {outcome.detail}"
    else:
        level, message = logging.INFO, f"published {outcome.events} events; run completed"
    log.log(level, message, extra={"fields": fields})
