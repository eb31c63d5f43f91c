"""What one process holds: settings, the HTTP pool, the token cache, the sink.

Built once per process by ``main`` (lazily, after gunicorn has forked), shared by
every invocation. A message is read once here (``Arrival``), and each flow is
handed it: ``handle_event`` reads the trigger, relays the run (or sweeps) and
logs one summary line; ``handle_completed`` links the run a run.completed names.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from dataclasses import dataclass
from typing import IO, Any

from handlers.cdf.api import CdfClient
from handlers.cdf.httpio import make_http
from handlers.cdf.resources import Resources
from handlers.cdf.tokens import TokenSource
from handlers.core.deadline import Deadline
from handlers.core.envelope import Envelope
from handlers.core.errors import InvalidTrigger
from handlers.core.link_events import COMPLETED
from handlers.core.poll import Clock
from handlers.core.trigger import Sweep, read_trigger
from handlers.flow.invocation import LINK_TRACE, RELAY_TRACE, Arrival, Delivery, summarize
from handlers.flow.linker import Linker, LinkOutcome
from handlers.flow.relay import Outcome, Relay, Topics
from handlers.flow.review import ReviewOutcome
from handlers.flow.sweep import Sweeper, SweepOutcome
from handlers.process.logs import log_context, traceparent_of
from handlers.process.settings import Settings
from handlers.process.shutdown import STOP
from handlers.process.tracing import invocation
from handlers.process.tracing import progress as tracing_progress
from handlers.pubsub.publish import PubSubSink, Sink, StdoutSink

log = logging.getLogger("matchrelay")


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
        review_topic = "-" if stdout is not None else settings.reviewed_topic()
        resources = Resources(settings, http, tokens, clock)
        linker = Linker(
            settings, cdf, resources, chosen, clock, link_topic, progress=tracing_progress(), review_topic=review_topic
        )
        return cls(settings, Relay(settings, cdf, chosen, clock, topics=topics, progress=tracing_progress()), linker)

    def handle_completed(self, event_id: str, data: Any, delivery: Delivery | None = None) -> LinkOutcome:
        """One message of the events topic for the link, start to end; never raises for what it or CDF did."""
        arrival = self._arrived(event_id, data, delivery, LINK_TRACE)
        completed = arrival.envelope.attribute("ce-type") == COMPLETED  # not every event of a run is a link's
        with invocation("on_run_completed", arrival.trace, arrival.deadline, arrival.received, record=completed) as t:
            return self.linker.handle(dataclasses.replace(arrival, trace=t))

    def handle_decision(self, event_id: str, data: Any, delivery: Delivery | None = None) -> ReviewOutcome:
        """One message of people's decisions (contract, section 10); never raises for what it or CDF did."""
        arrival = self._arrived(event_id, data, delivery, RELAY_TRACE)
        with invocation("on_review_decision", arrival.trace, arrival.deadline, arrival.received) as trace:
            return self.linker.decide(dataclasses.replace(arrival, trace=trace))

    def handle_event(self, event_id: str, data: Any, delivery: Delivery | None = None) -> Outcome:
        """One trigger message, start to end; never raises for anything the message or CDF did."""
        arrival = self._arrived(event_id, data, delivery, RELAY_TRACE)
        with invocation("on_run_message", arrival.trace, arrival.deadline, arrival.received) as trace:
            arrival = dataclasses.replace(arrival, trace=trace)
            with log_context(messageId=arrival.envelope.message_id, **arrival.log_fields(self._gcp)):
                return self._handle(arrival)

    def _arrived(self, event_id: str, data: Any, delivery: Delivery | None, names: tuple[str, ...]) -> Arrival:
        """The message read once, and the invocation's deadline from its receipt, on the one clock both flows use."""
        monotonic = self.relay.clock.monotonic
        delivery = delivery or Delivery(monotonic())
        deadline = Deadline.after(self.settings.timeout_s, delivery.received, monotonic)
        return Arrival.of(Envelope.read(event_id, data), delivery, deadline, names)

    def _handle(self, arrival: Arrival) -> Outcome:
        settings, deadline = self.settings, arrival.deadline
        traceparent = traceparent_of(arrival.trace) if arrival.trace else None
        try:
            trigger = read_trigger(
                arrival.envelope, default_project=settings.cdf_project, allowed=settings.allowed_projects
            )
        except InvalidTrigger as exc:
            return self._summarized(self.relay.invalid(exc, traceparent, deadline), arrival)
        trigger = dataclasses.replace(trigger, traceparent=traceparent)
        continue_to = settings.trigger_topic(arrival.source)
        if isinstance(trigger, Sweep):  # a stage of its own: it relays no run, it hands runs on
            with log_context(project=trigger.project, pipelineId=trigger.pipeline_id):
                outcome = Sweeper(self.relay).sweep(trigger, settings.budget_s, deadline, continue_to)
                return self._summarized(outcome, arrival)
        with log_context(project=trigger.project, pipelineId=trigger.pipeline_id, runId=trigger.run_id):
            outcome = self.relay.relay(trigger, settings.budget_s, None, deadline, continue_to)
            with log_context(runId=outcome.run_id):
                return self._summarized(outcome, arrival)

    def _summarized(self, outcome: Outcome, arrival: Arrival) -> Outcome:
        summarize(*_summary(outcome), arrival.received, self.relay.clock.monotonic)
        return outcome

    @property
    def _gcp(self) -> str | None:
        return self.settings.google_cloud_project


def _summary(outcome: Outcome) -> tuple[int, str, dict[str, Any]]:
    """How the relay's line says how it ended: how many polls, retries and events."""
    fields: dict[str, Any] = {
        "outcome": outcome.kind,
        "reason": outcome.reason,
        "polls": outcome.polls,
        "retries": outcome.retries,
        "events": outcome.events,
        "segment": outcome.segment,
    }
    if outcome.completed_lag_s is not None:  # the invocation that confirmed run.completed: how long after CDF's end
        fields["completedLagS"] = round(outcome.completed_lag_s, 3)
    if isinstance(outcome, SweepOutcome):
        fields |= outcome.fields()
    if isinstance(outcome, SweepOutcome) and outcome.kind in ("swept", "continued"):
        return logging.INFO, outcome.summary(), fields
    if outcome.kind == "handed_back":
        # A run still going (budget spent, or the instance stopping) is routine: INFO. A failed publish is not.
        # A sweep too large for one invocation would come back for ever: an operator must look.
        level = logging.ERROR if outcome.reason in ("publish_failed", "sweep_too_large") else logging.INFO
        return level, f"handed the message back for redelivery: {outcome.detail}", fields
    if outcome.kind == "continued":
        return logging.INFO, f"published {outcome.events} events; the run continues: {outcome.detail}", fields
    if outcome.kind == "failed":
        return logging.WARNING, f"published run.failed ({outcome.reason}): {outcome.detail}", fields
    return logging.INFO, f"published {outcome.events} events; run completed", fields
