"""A review page for matchrelay's ``link.review`` events: people confirm or reject, and their decisions go back.

The sources the link of a run left for people (below the threshold, ambiguous,
in conflict) arrive as ``link.review`` events on a pull subscription of the
page's own. The page shows each with its candidates, best-scored first; one
click publishes the decision to the decisions topic that matchrelay's
``on_review_decision`` is pushed from, with the ordering key
``{project}/{pipelineId}``, and the source leaves the page. The
``review.applied`` that answers it says what came of it: pairs written to the
pipeline's lists, links written or put back in CDF.

The page's memory is SQLite (``Store``), written before a message is acked, so
a restart loses nothing. One row per source holds its latest ``link.review``: a
redelivery, or an older run's late copy, changes nothing; a later run that
leaves the source again puts it back with its new candidates. A decision whose
``review.applied`` reports a refusal puts its source back, with a note.

Environment: ``GOOGLE_CLOUD_PROJECT``; ``REVIEW_SUBSCRIPTION`` (a pull
subscription of matchrelay's ``REVIEW_TOPIC``, which carries both event types);
``DECISIONS_TOPIC`` (the topic ``on_review_decision`` is pushed from); ``REVIEW_DB``
(the SQLite file, default ``review.sqlite3``); ``PORT`` (default 8080);
``PUBSUB_EMULATOR_HOST`` for the emulator; for names beside the ids (``names.py``), ``CDF_URL``,
``CDF_PROJECT`` and ``CDF_TOKEN`` or ``IDP_TOKEN_URL``, ``IDP_CLIENT_ID``, ``IDP_CLIENT_SECRET``,
``IDP_SCOPES``. Run it with ``python main.py``, or
``gunicorn -b :$PORT main:app`` (one worker: the subscription runs in it).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloudevents.exceptions import GenericException
from cloudevents.http import from_http
from flask import Flask, abort, redirect, render_template, request, url_for
from google.cloud import pubsub_v1
from names import Names
from store import Store, applied_id
from werkzeug.wrappers import Response

REVIEW = "com.cognite.entitymatching.link.review"
APPLIED = "com.cognite.entitymatching.review.applied"
REASONS = {
    "below_threshold": "below the link's threshold",
    "ambiguous": "its best matches tie between assets",
    "conflict": "linked to another asset now",
}
# Not a readable matchrelay event: acked, since no redelivery can change that.
MALFORMED = (GenericException, ValueError, KeyError, TypeError, AttributeError)
log = logging.getLogger("review-page")


@dataclass(frozen=True)
class Settings:
    project: str
    subscription: str
    decisions_topic: str
    database: str = "review.sqlite3"


def load_settings(environ: Mapping[str, str]) -> Settings:
    """The settings from the environment; ``KeyError`` names a variable that is missing."""
    project = environ["GOOGLE_CLOUD_PROJECT"]
    subscription, topic = environ["REVIEW_SUBSCRIPTION"], environ["DECISIONS_TOPIC"]
    return Settings(
        project,
        subscription if "/" in subscription else f"projects/{project}/subscriptions/{subscription}",
        topic if "/" in topic else f"projects/{project}/topics/{topic}",
        environ.get("REVIEW_DB", "review.sqlite3"),
    )


def received(store: Store, message: Any) -> None:
    """One message of the subscription: kept, then acked; a message the store could not take is handed back."""
    try:
        event = from_http(dict(message.attributes), message.data)
        kind, event_id, data = event["type"], event["id"], event.get_data()
        if not isinstance(data, dict):
            raise ValueError(f"{kind} {event_id}: its data is not a JSON object")
        if kind == REVIEW:
            store.add_review(event_id, data)
        elif kind == APPLIED:
            store.add_applied(event_id, data)
    except MALFORMED as exc:
        log.warning("not a readable matchrelay event, acked: %s", exc)
    except sqlite3.Error:
        log.exception("could not keep the event: handed back")
        message.nack()
        return
    message.ack()


def message(review: dict[str, Any], candidate: dict[str, Any], verdict: str) -> dict[str, Any]:
    """The decisions message for one click: the source by id, the target by id, else by its external id."""
    target = (
        {"targetId": candidate["targetId"]}
        if candidate.get("targetId") is not None
        else {"targetExternalId": candidate["targetExternalId"]}
    )
    decision = {"sourceId": review["sourceId"], **target, "decision": verdict}
    return {"project": review["project"], "pipelineId": review["pipelineId"], "decisions": [decision]}


def publish(publisher: Any, topic: str, body: dict[str, Any]) -> None:
    """Publish a decisions message with its pipeline's ordering key, and wait until Pub/Sub has it."""
    key = f"{body['project']}/{body['pipelineId']}"
    try:
        publisher.publish(topic, json.dumps(body).encode(), ordering_key=key).result(timeout=30)
    except Exception:
        publisher.resume_publish(topic, key)  # a key stops at its first failure until resumed: let the next try go
        raise


def send(store: Store, publisher: Any, topic: str, form: Mapping[str, str]) -> str | None:
    """One click: its decision published and its source out of the queue; else a notice saying why not.
    ``ValueError`` for a form that names no candidate of the source."""
    review, verdict = store.waiting(form.get("key", "")), form.get("decision")
    if review is None:  # decided already, in another tab or by another person
        return "That source was decided already."
    candidates, index = review["candidates"], form.get("candidate", "")
    if verdict not in ("confirm", "reject") or not index.isdigit() or int(index) >= len(candidates):
        raise ValueError("a decision is confirm or reject of one of the source's candidates")
    body = message(review, candidates[int(index)], verdict)
    try:
        publish(publisher, topic, body)
    except Exception as exc:  # the source stays in the queue, to be decided again
        log.warning("a decision could not be sent: %s", exc)
        return "The decision could not be sent: try again."
    store.decided(
        review["key"], body["decisions"][0], applied_id(body["project"], body["pipelineId"], body["decisions"])
    )
    return None


def create_app(settings: Settings, names: Names, publisher: Any = None) -> Flask:
    """The page over its store; decisions go out through ``publisher`` (ordered: a pipeline's apply in order)."""
    app = Flask(__name__)
    store = Store(settings.database)
    options = pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    publisher = publisher or pubsub_v1.PublisherClient(publisher_options=options)
    app.extensions["review_store"] = store

    @app.get("/")
    def page() -> str:
        version = store.version  # read first: a change while the page is drawn makes it reload, not go unseen
        (queue, waiting), recent = store.queue(), store.recent()
        names.annotate(queue + recent)
        return render_template(
            "review.html",
            queue=queue,
            waiting=waiting,
            recent=recent,
            version=version,
            reasons=REASONS,
            topic=settings.decisions_topic,
            notice=request.args.get("notice"),
        )

    @app.get("/version")
    def version() -> dict[str, int]:
        return {"version": store.version}

    @app.post("/decide")
    def decide() -> Response:
        try:
            notice = send(store, publisher, settings.decisions_topic, request.form)
        except ValueError as exc:
            abort(400, str(exc))
        return redirect(url_for("page", notice=notice), code=303)

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    return app


def subscribe(store: Store, settings: Settings) -> Any:
    """Pull the subscription in the background (the client's streaming pull); its future."""
    subscriber = pubsub_v1.SubscriberClient()
    return subscriber.subscribe(settings.subscription, lambda message: received(store, message))


def serve(environ: Mapping[str, str]) -> Flask:
    """The page with its subscription running: what ``python main.py`` and ``gunicorn main:app`` serve."""
    logging.basicConfig(level=environ.get("LOG_LEVEL", "INFO"))
    settings = load_settings(environ)
    served = create_app(settings, Names(environ))
    subscribe(served.extensions["review_store"], settings)
    return served


if __name__ == "__main__":
    app = serve(os.environ)
    app.run(host=os.environ.get("HOST", "0.0.0.0"), port=int(os.environ.get("PORT", "8080")), threaded=True)
elif "REVIEW_SUBSCRIPTION" in os.environ:
    app = serve(os.environ)  # gunicorn main:app
