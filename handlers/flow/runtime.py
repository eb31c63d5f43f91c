"""What one process holds: settings, the HTTP pool, the token cache, the sink.

Built once per process by ``main`` (lazily, after gunicorn has forked), shared by
every invocation. ``handle_event`` is the function's whole job for one
CloudEvent: read the trigger, relay the run, log one summary line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from handlers.cdf.api import CdfClient
from handlers.cdf.httpio import make_http
from handlers.cdf.resources import Resources
from handlers.cdf.tokens import TokenSource
from handlers.core.deadline import Deadline
from handlers.core.errors import HandBack, InvalidTrigger
from handlers.core.link_events import COMPLETED
from handlers.core.poll import Clock
from handlers.core.trigger import Sweep, message_id_of, parse_event
from handlers.flow.linker import Linker, LinkOutcome, message_trace
from handlers.flow.relay import Outcome, Relay, Topics
from handlers.flow.sweep import Sweeper, SweepOutcome
from handlers.process.logs import Trace, gcp_project, log_context, parse_traceparent, trace_fields, traceparent_of
from handlers.process.settings import Settings
from handlers.process.shutdown import STOP
from handlers.process.tracing import annotate, invocation
from handlers.process.tracing import progress as tracing_progress
from handlers.pubsub.publish import PubSubSink, Sink, StdoutSink

log = logging.getLogger("matchrelay")


@dataclass(frozen=True)
class Delivery:
    """How a trigger arrived: when (``time.monotonic``), from which topic (Eventarc's ``source``), with which
    trace (the request's headers)."""

    received: float
    source: str | None = None
    trace: Trace | None = None


@dataclass
class Runtime:
    settings: Settings
    relay: Relay
    linker: Linker  # the link (contract, section 8): the same pool, token and sink as the relay

    @classmethod
    def build(cls, settings: Settings, stdout: IO[str] | None = None, sink: Sink | None = None) -> Runtime:
        """Wire the real edges: httpx to CDF, Pub/Sub (or ``stdout``), the system clock."""
        http = make_http(settings)
        tokens = TokenSource(settings, http)
        cdf = CdfClient(settings, http, tokens)
        if stdout is not None:
            chosen, topics = sink or StdoutSink(stdout), Topics("-", "-")
        else:
            chosen, topics = sink or PubSubSink(), Topics(settings.topic(), settings.error_topic())
        clock = Clock(time.monotonic, STOP.wait, random.Random())  # SIGTERM wakes the poller's sleep
        link_topic = "-" if stdout is not None else settings.linked_topic()
        resources = Resources(settings, http, tokens, clock)
        linker = Linker(settings, cdf, resources, chosen, clock, link_topic, progress=tracing_progress())
        return cls(settings, Relay(settings, cdf, chosen, clock, topics=topics, progress=tracing_progress()), linker)

    def handle_completed(self, event_id: str, data: Any, delivery: Delivery | None = None) -> LinkOutcome:
        """One message of the events topic for the link, start to end; never raises for what it or CDF did."""
        delivery, data, message, deadline = self._arrived(data, delivery)
        trace = delivery.trace or message_trace(message)  # the order the link itself follows
        attributes = message.get("attributes") if isinstance(message, dict) else None
        completed = isinstance(attributes, dict) and attributes.get("ce-type") == COMPLETED  # not every event of a run
        with invocation("on_run_completed", trace, deadline, delivery.received, record=completed) as trace:
            outcome = self.linker.handle_event(event_id, data, delivery.received, trace, delivery.source)
            annotate({"outcome": outcome.kind, "reason": outcome.reason})
            return outcome

    def _arrived(self, data: Any, delivery: Delivery | None) -> tuple[Delivery, Any, Any, Deadline]:
        """A CloudEvent's data as JSON, its Pub/Sub message, and the invocation's deadline from its receipt."""
        delivery = delivery or Delivery(time.monotonic())
        if isinstance(data, bytes | str):  # a CloudEvent without a JSON content type
            data = _loads(data)
        message = data.get("message") if isinstance(data, dict) else None
        # Both flows run on the one clock the runtime built (the relay's and the link's are the same object).
        return (
            delivery,
            data,
            message,
            Deadline.after(self.settings.timeout_s, delivery.received, self.relay.clock.monotonic),
        )

    def handle_event(self, event_id: str, data: Any, delivery: Delivery | None = None) -> Outcome:
        """One trigger message, start to end; never raises for anything the message or CDF did."""
        delivery, data, message, deadline = self._arrived(data, delivery)
        with invocation(
            "on_run_message", delivery.trace or _attribute_trace(message), deadline, delivery.received
        ) as trace:
            return self._handle(event_id, data, message_id_of(event_id, message), delivery, trace, deadline)

    def _handle(
        self, event_id: str, data: Any, message_id: str, delivery: Delivery, trace: Trace | None, deadline: Deadline
    ) -> Outcome:
        traceparent = traceparent_of(trace) if trace else None
        with log_context(messageId=message_id, **self._trace_fields(trace, delivery.source, data)):
            try:
                trigger = parse_event(
                    event_id, data, default_project=self.settings.cdf_project, allowed=self.settings.allowed_projects
                )
            except InvalidTrigger as exc:
                outcome = self._guard(self.relay.invalid, exc, traceparent, deadline)
                _summarize(outcome, delivery.received)
                return outcome
            trigger = dataclasses.replace(trigger, traceparent=traceparent)
            continue_to = self.settings.trigger_topic(delivery.source)
            if isinstance(trigger, Sweep):  # a stage of its own: it relays no run, it hands runs on
                with log_context(project=trigger.project, pipelineId=trigger.pipeline_id):
                    sweeper = Sweeper(self.relay).sweep
                    outcome = self._guard(sweeper, trigger, self.settings.budget_s, deadline, continue_to)
                    _summarize(outcome, delivery.received)
                return outcome
            with log_context(project=trigger.project, pipelineId=trigger.pipeline_id, runId=trigger.run_id):
                outcome = self._guard(self.relay.relay, trigger, self.settings.budget_s, None, deadline, continue_to)
                with log_context(runId=outcome.run_id):
                    _summarize(outcome, delivery.received)
                return outcome

    def _trace_fields(self, trace: Trace | None, source: str | None, data: Any) -> dict[str, Any]:
        """Cloud Logging's trace fields, the trace named by ``GOOGLE_CLOUD_PROJECT``, else by the project of the
        trigger's topic or subscription (Cloud Run does not set that variable by itself)."""
        subscription = data.get("subscription") if isinstance(data, dict) else None
        return trace_fields(trace, gcp_project(self.settings.google_cloud_project, source, subscription))

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


def _attribute_trace(message: Any) -> Trace | None:
    """A valid ``traceparent`` attribute on the trigger message (the worker's own triggers carry one)."""
    attributes = message.get("attributes") if isinstance(message, dict) else None
    value = attributes.get("traceparent") if isinstance(attributes, dict) else None
    return parse_traceparent(value) if isinstance(value, str) else None


def _summarize(outcome: Outcome, started: float) -> None:
    """One line per invocation: how it ended, how many polls, retries and events, how long."""
    fields = {
        "outcome": outcome.kind,
        "reason": outcome.reason,
        "polls": outcome.polls,
        "retries": outcome.retries,
        "events": outcome.events,
        "segment": outcome.segment,
        "seconds": round(time.monotonic() - started, 3),
    }
    if outcome.completed_lag_s is not None:  # the invocation that confirmed run.completed: how long after CDF's end
        fields["completedLagS"] = round(outcome.completed_lag_s, 3)
    if isinstance(outcome, SweepOutcome):
        fields |= outcome.fields()
    if isinstance(outcome, SweepOutcome) and outcome.kind in ("swept", "continued"):
        level, message = logging.INFO, outcome.summary()
    elif outcome.kind == "handed_back":
        # A run still going (budget spent, or the instance stopping) is routine: INFO. A failed publish is not.
        # A sweep too large for one invocation would come back for ever: an operator must look.
        level = logging.ERROR if outcome.reason in ("publish_failed", "sweep_too_large") else logging.INFO
        message = f"handed the message back for redelivery: {outcome.detail}"
    elif outcome.kind == "continued":
        level, message = logging.INFO, f"published {outcome.events} events; the run continues: {outcome.detail}"
    elif outcome.kind == "failed":
        level, message = logging.WARNING, f"published run.failed ({outcome.reason}): {outcome.detail}"
    else:
        level, message = logging.INFO, f"published {outcome.events} events; run completed"
    log.log(level, message, extra={"fields": fields})
    annotate(fields, error=message if level >= logging.ERROR else None)  # the same, on the invocation's span
