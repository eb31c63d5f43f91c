"""A function chained after matchrelay: each match scoring at least ``MIN_SCORE`` recorded once in Firestore.

``on_event`` is a CloudEvent function (functions-framework). Eventarc (or a Pub/Sub
push subscription, which functions-framework converts) calls it with a
``google.cloud.pubsub.topic.v1.messagePublished`` event for each message on
matchrelay's events topic. It unwraps the matchrelay event inside with the
CloudEvents SDK (Pub/Sub binary content mode: attributes are the ``ce-`` headers,
the message data is the body) and:

- ``match``: records the match in ``{PREFIX}_matches/{id}`` if its score is at least
  ``MIN_SCORE``, then marks its ``matchIndex`` seen (kept or not) in
  ``{PREFIX}_runs/{run}/seen/{matchIndex}``;
- ``run.completed``: records the run's counts in ``{PREFIX}_runs/{run}``;
- after either, once the run's summary is in and ``matchCount`` matches are seen,
  creates ``{PREFIX}_completions/{run}``: the run's kept matches are all recorded;
- any other event (rules, ``run.failed``): acknowledged and left alone.

Every write is a create-if-absent keyed by the event's identity, so redeliveries
and replays change nothing and the completion is created once. ``{id}`` and
``{run}`` are ``doc_id`` of the ``ce-id`` and of ``{project}/{pipelineId}/{runId}``.
Each document also holds the ``attempt`` (one per delivery) that wrote it, so a
create the client retried after it went through is not taken for a duplicate.
A Firestore error answers 503, so Pub/Sub delivers the message again; a message
that is not a readable matchrelay event is acknowledged (a redelivery would not
fix it) and logged.

Environment: ``MIN_SCORE`` (default 0: every match with a score; a match whose
score is null is never kept), ``COLLECTION_PREFIX`` (default ``matchrelay``),
``FIRESTORE_DATABASE`` (default ``(default)``), ``FIRESTORE_TIMEOUT_S`` (default 10),
``GOOGLE_CLOUD_PROJECT`` (inferred on Google Cloud), ``FIRESTORE_EMULATOR_HOST``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import os
import sys
import threading
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import functions_framework
from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent, from_http
from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.auth import exceptions as auth_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from werkzeug.exceptions import ServiceUnavailable

PREFIX = "com.cognite.entitymatching."
MATCH, COMPLETED = PREFIX + "match", PREFIX + "run.completed"
# Firestore's limit on a document id, in bytes.
MAX_ID_BYTES = 1500
# Not a readable matchrelay event: acknowledged, since no redelivery can change that.
MALFORMED = (GenericException, ValueError, KeyError, TypeError, AttributeError, binascii.Error)
# Firestore (or the credentials to reach it) failed: answer 503 so Pub/Sub delivers again.
UNAVAILABLE = (api_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError)


@dataclass(frozen=True)
class Settings:
    min_score: float = 0.0
    prefix: str = "matchrelay"
    database: str = "(default)"
    timeout_s: float = 10.0
    project: str | None = None


def load_settings(environ: Mapping[str, str]) -> Settings:
    """The settings from the environment; ``ValueError`` names the variable that is wrong."""
    values: dict[str, float] = {}
    for name, default in (("MIN_SCORE", 0.0), ("FIRESTORE_TIMEOUT_S", 10.0)):
        try:
            values[name] = float(environ.get(name, default))
        except ValueError:
            raise ValueError(f"{name} must be a number, not {environ[name]!r}") from None
        if not math.isfinite(values[name]):
            raise ValueError(f"{name} must be finite, not {environ[name]!r}")
    if values["FIRESTORE_TIMEOUT_S"] <= 0:
        raise ValueError("FIRESTORE_TIMEOUT_S must be positive")
    prefix = environ.get("COLLECTION_PREFIX", "matchrelay")
    if not prefix or "/" in prefix:
        raise ValueError(f"COLLECTION_PREFIX must be a non-empty name without '/', not {prefix!r}")
    return Settings(
        min_score=values["MIN_SCORE"],
        prefix=prefix,
        database=environ.get("FIRESTORE_DATABASE", "(default)"),
        timeout_s=values["FIRESTORE_TIMEOUT_S"],
        project=environ.get("GOOGLE_CLOUD_PROJECT") or None,
    )


def doc_id(key: str) -> str:
    """``key`` as a Firestore document id: percent-encoded, every character but ``A-Z a-z 0-9 -`` as ``%XX``.

    So ``acme/123/456/match/17`` is ``acme%2F123%2F456%2Fmatch%2F17``: no ``/``, never ``.``, ``..`` or
    ``__...__``, one id per key, and ``urllib.parse.unquote`` gives the key back.
    """
    encoded = urllib.parse.quote(key, safe="").replace(".", "%2E").replace("_", "%5F").replace("~", "%7E")
    if not encoded or len(encoded.encode()) > MAX_ID_BYTES:
        raise ValueError(f"no document id for a key of {len(key)} characters")
    return encoded


def unwrap(data: Any) -> CloudEvent:
    """The matchrelay event a ``messagePublished`` event's data carries, read by the CloudEvents SDK.

    matchrelay publishes in binary content mode, so the message's attributes are the event's ``ce-``
    attributes and ``content-type``, exactly the headers of an HTTP binary-mode event, and its data is
    the body: ``from_http`` reads them as such.
    """
    message = data["message"]
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict) or "ce-specversion" not in attributes:
        raise ValueError("the message has no ce-specversion attribute: not a CloudEvent in binary content mode")
    body = base64.b64decode(message.get("data") or "", validate=True)
    return from_http(attributes, body, data_unmarshaller=json.loads)


def kept(data: Mapping[str, Any], min_score: float) -> bool:
    """A match is kept when its score is a number of at least ``min_score`` (a null score never is)."""
    score = data.get("score")
    return isinstance(score, int | float) and not isinstance(score, bool) and score >= min_score


def run_key(data: Mapping[str, Any]) -> str:
    """``{project}/{pipelineId}/{runId}``, the part of a ``ce-id`` before its subject."""
    parts = [data["project"], data["pipelineId"], data["runId"]]
    if any(part is None or isinstance(part, bool) or not isinstance(part, str | int) for part in parts):
        raise ValueError(f"the event does not name its run: {parts}")
    return "/".join(str(part) for part in parts)


def match_index(data: Mapping[str, Any]) -> int:
    index = data["matchIndex"]
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"matchIndex is not a position: {index!r}")
    return index


class Store:
    """The function's Firestore collections; every write is a create that fails if the document exists."""

    def __init__(self, client: Any, settings: Settings) -> None:
        self._client = client
        self._timeout = settings.timeout_s
        # Retry transient errors within the timeout, then fail: Pub/Sub's redelivery is the longer retry.
        self._retry = api_retry.Retry(initial=0.1, maximum=1.0, multiplier=2.0, timeout=settings.timeout_s)
        self.matches = client.collection(f"{settings.prefix}_matches")
        self.runs = client.collection(f"{settings.prefix}_runs")
        self.completions = client.collection(f"{settings.prefix}_completions")

    def create(self, ref: Any, document: dict[str, Any], attempt: str) -> bool:
        """Create ``ref`` as written by ``attempt``; False if an earlier delivery wrote it.

        The client retries a create whose answer was lost, and the retry meets the document its first try
        wrote: the ``attempt`` stored with it tells this delivery's own write from another's.
        """
        try:
            ref.create(document | {"attempt": attempt}, retry=self._retry, timeout=self._timeout)
        except api_exceptions.AlreadyExists:
            return bool((self.get(ref).to_dict() or {}).get("attempt") == attempt)
        return True

    def count(self, query: Any) -> int:
        results = query.count(alias="n").get(retry=self._retry, timeout=self._timeout)
        return int(results[0][0].value)

    def get(self, ref: Any) -> Any:
        return ref.get(retry=self._retry, timeout=self._timeout)

    def complete_if_all_seen(self, run: str, attempt: str) -> bool:
        """Create the run's completion once its summary is in and ``matchCount`` matches are seen.

        True only for the call that created it. A match and the summary processed at the same time
        cannot both miss it: each writes before it reads what the other writes.
        """
        summary = self.get(self.runs.document(doc_id(run)))
        if not summary.exists or self.get(self.completions.document(doc_id(run))).exists:
            return False
        seen = self.runs.document(doc_id(run)).collection("seen")
        if self.count(seen) < int(summary.get("matchCount")):
            return False
        document = {
            "run": run,
            "matchCount": summary.get("matchCount"),
            "keptCount": self.count(seen.where(filter=FieldFilter("kept", "==", True))),
            "completedAt": firestore.SERVER_TIMESTAMP,
        }
        return self.create(self.completions.document(doc_id(run)), document, attempt)


@dataclass(frozen=True)
class Item:
    """What one kept event asks of the store: a match (kept or not) or a run's summary."""

    ce_id: str
    run: str
    data: dict[str, Any]
    index: int | None = None  # a match's matchIndex; None for a summary
    keep: bool = False


def parse(event: CloudEvent, min_score: float) -> Item | None:
    """The event as an ``Item``, None if it is of a type this function ignores; ``MALFORMED`` if unreadable."""
    if event["type"] not in (MATCH, COMPLETED):
        return None
    data = event.get_data()
    if not isinstance(data, dict):
        raise ValueError("the event's data is not a JSON object")
    ce_id, run = str(event["id"]), run_key(data)
    doc_id(ce_id), doc_id(run)  # refused here, acked as malformed, rather than failing every redelivery later
    if event["type"] == MATCH:
        return Item(ce_id, run, data, match_index(data), kept(data, min_score))
    count = data.get("matchCount")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"matchCount is not a count: {count!r}")
    return Item(ce_id, run, data)


def record(store: Store, item: Item, attempt: str) -> tuple[str, bool]:
    """Write what ``item`` asks, each write once, as ``attempt``: (outcome, whether this call completed the run)."""
    runs = store.runs.document(doc_id(item.run))
    if item.index is not None:
        if item.keep:  # before it is marked seen, so that every match seen means every kept one recorded
            match = {**item.data, "ceId": item.ce_id, "run": item.run}
            store.create(store.matches.document(doc_id(item.ce_id)), match, attempt)
        seen = {"ceId": item.ce_id, "kept": item.keep}
        new = store.create(runs.collection("seen").document(str(item.index)), seen, attempt)
        outcome = ("stored" if item.keep else "below-threshold") if new else "duplicate"
    else:
        names = ("matchCount", "suggestedRuleCount", "generatedRuleCount", "status", "errors")
        summary = {name: item.data.get(name) for name in names} | {"ceId": item.ce_id, "run": item.run}
        outcome = "summary" if store.create(runs, summary, attempt) else "duplicate"
    return outcome, store.complete_if_all_seen(item.run, attempt)


class _JsonFormatter(logging.Formatter):
    """One JSON object a line, as Cloud Logging reads structured logs from stdout."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        return json.dumps({"severity": record.levelname, "message": record.getMessage(), **fields}, default=str)


def _logger() -> logging.Logger:
    logger = logging.getLogger("downstream")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(_JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


_log = _logger()
try:
    _settings = load_settings(os.environ)
except ValueError as exc:  # a wrong deployment fails at start with one clear line
    _log.critical("configuration error: %s", exc)
    raise SystemExit(2) from None
_store: Store | None = None
_lock = threading.Lock()


def store() -> Store:
    """The process's one Firestore client, built on first use (gRPC must not be set up before gunicorn forks)."""
    global _store
    with _lock:
        if _store is None:
            client = firestore.Client(project=_settings.project, database=_settings.database)
            _store = Store(client, _settings)
        return _store


@functions_framework.cloud_event
def on_event(envelope: CloudEvent) -> None:
    """Record one message of matchrelay's events topic; 2xx acknowledges it, 503 hands it back to Pub/Sub."""
    fields: dict[str, Any] = {"messageId": envelope["id"]}
    try:
        event = unwrap(envelope.get_data())
        fields |= {"ceId": event["id"], "ceType": event["type"]}
        item = parse(event, _settings.min_score)
    except MALFORMED as exc:
        _log.warning(
            "not a readable matchrelay event, acked: %r", exc, extra={"fields": fields | {"outcome": "malformed"}}
        )
        return
    if item is None:
        _log.info("ignored %s", event["id"], extra={"fields": fields | {"outcome": "ignored"}})
        return
    try:
        outcome, completed = record(store(), item, uuid.uuid4().hex)
    except UNAVAILABLE as exc:
        _log.error("Firestore failed, handed back: %r", exc, extra={"fields": fields | {"outcome": "unavailable"}})
        raise ServiceUnavailable("Firestore failed; deliver again") from None
    _log.info("%s %s", outcome, item.ce_id, extra={"fields": fields | {"outcome": outcome}})
    if completed:
        _log.info("run %s complete", item.run, extra={"fields": fields | {"outcome": "complete", "run": item.run}})
