"""What an event is and whom it is about: the message, the run's coordinates, its ids and attributes. Pure.

``RunRef`` is the one place that knows how a run (or a sweep, or a trigger that
named no run) becomes ``ce-source``, ``ce-id`` and the other context
attributes of contract section 5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from handlers.core.models import RunSummary
from handlers.core.window import Window

TYPE_PREFIX = "com.cognite.entitymatching."
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Event:
    """One Pub/Sub message in CloudEvents binary mode: JSON data and ``ce-`` attributes."""

    data: bytes
    attributes: dict[str, str]

    @property
    def type(self) -> str:
        return self.attributes["ce-type"]


@dataclass(frozen=True)
class RunRef:
    """A run's coordinates, as far as they are known, and the CDF URL they hang under."""

    cdf_url: str
    project: str
    pipeline_id: int | None = None
    run_id: int | None = None
    known_project: bool = True  # False when the trigger's project could not be read
    from_trigger: bool = False  # an invalid trigger: the source names no run
    latest_key: str | None = None  # runId "latest" not yet resolved: the message that asked for it
    traceparent: str | None = None  # the trigger's trace (W3C traceparent), carried as ce-traceparent
    window: Window | None = None  # a sweep's: its failure names the window and the pipeline (or all), no run

    @property
    def source(self) -> str:
        base = f"{self.cdf_url}/api/v1/projects/{self.project}/context/entitymatching/pipelines"
        if self.from_trigger or self.pipeline_id is None:
            return base
        if self.window is not None:
            return f"{base}/{self.pipeline_id}/runs"
        if self.run_id is None:
            return f"{base}/{self.pipeline_id}/runs/latest" if self.latest_key else base
        return f"{base}/{self.pipeline_id}/runs/{self.run_id}"

    def event_id(self, subject: str) -> str:
        if self.window is not None:
            return f"{self.project}/{self.pipeline_id or 'all'}/{subject}"
        run = self.run_id if self.run_id is not None else f"latest/{self.latest_key}"
        return f"{self.project}/{self.pipeline_id}/{run}/{subject}"

    def coordinates(self, job_id: int | None) -> dict[str, Any]:
        return {
            "project": self.project if self.known_project else None,
            "pipelineId": self.pipeline_id,
            "runId": self.run_id,
            "jobId": job_id,
        }

    def attributes(self, kind: str, subject: str, time: str, event_id: str | None = None) -> dict[str, str]:
        attributes = {
            "ce-specversion": "1.0",
            "ce-type": TYPE_PREFIX + kind,
            "ce-source": self.source,
            "ce-id": event_id or self.event_id(subject),
            "ce-subject": subject,
            "ce-time": time,
            "content-type": "application/json",
        }
        if self.known_project:
            attributes["ce-cdfproject"] = self.project
        if self.pipeline_id is not None:
            attributes["ce-pipelineid"] = str(self.pipeline_id)
        if self.run_id is not None:
            attributes["ce-runid"] = str(self.run_id)
        if self.traceparent is not None:
            attributes["ce-traceparent"] = self.traceparent
        return attributes


def epoch_ms(wall: Callable[[], float]) -> int:
    """The time of a decision, epoch milliseconds, from an injected wall clock (epoch seconds)."""
    return int(wall() * 1000)


def rfc3339(epoch_ms: int | float) -> str:
    """``2024-10-29T12:19:06.000Z``: UTC, milliseconds, four-digit year (integer arithmetic: no float rounding)."""
    ms = int(epoch_ms)
    m = _EPOCH + timedelta(seconds=ms // 1000)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}.{ms % 1000:03d}Z"


def run_time(summary: RunSummary | None, decided_at_ms: int) -> str:
    """``ce-time``: the run's ``statusTime``, or the time of the decision when there is none."""
    if summary is not None and summary.statusTime is not None:
        return rfc3339(summary.statusTime)
    return rfc3339(decided_at_ms)
