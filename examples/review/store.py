"""The review page's memory: the sources waiting for a person, and what came of the decisions sent (SQLite).

One row per source (``{project}/{pipelineId}/{sourceId}``) holds its latest
``link.review``: a redelivery of the same event changes nothing, an older run's
late copy changes nothing, and a later run that leaves the source again puts it
back in the queue with its new candidates. A decision sent takes the source out
of the queue and remembers the id of the ``review.applied`` that will answer it;
when that event reports a refusal (``reason`` not null), the source comes back
with a note, so no decision is lost to a refusal nobody saw.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    key TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    best REAL,
    review TEXT NOT NULL,
    decision TEXT,
    applied_id TEXT,
    decided_at REAL,
    note TEXT
);
CREATE TABLE IF NOT EXISTS applied (event_id TEXT PRIMARY KEY, data TEXT NOT NULL);
"""


def source_key(review: dict[str, Any]) -> str:
    return f"{review['project']}/{review['pipelineId']}/{review['sourceId']}"


def applied_id(project: str, pipeline_id: int, decisions: list[dict[str, Any]]) -> str:
    """The ``ce-id`` of the ``review.applied`` matchrelay publishes for a message of these decisions: the first 16 hex
    digits of the SHA-256 of the decisions as sent, keys sorted, no spaces."""
    canonical = json.dumps(decisions, sort_keys=True, separators=(",", ":"))
    return f"{project}/{pipeline_id}/review/{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"


def _best(review: dict[str, Any]) -> float | None:
    scores = [c["score"] for c in review.get("candidates") or () if c.get("score") is not None]
    return max(scores, default=None)


class Store:
    """The queue and the decisions, shared by the page's requests and the subscription's callback threads."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()  # one writer or reader at a time: requests and callbacks run in threads
        with self._lock, self._db:
            self._db.executescript(SCHEMA)
        self.version = 0  # grows at every change: the page reloads when it sees a new one

    def add_review(self, event_id: str, review: dict[str, Any]) -> bool:
        """Keep a ``link.review``; False when it changed nothing (a redelivery, or an older run's)."""
        key, run_id = source_key(review), int(review["runId"])
        with self._lock, self._db:
            row = self._db.execute("SELECT event_id, run_id FROM sources WHERE key = ?", (key,)).fetchone()
            if row is not None and (row[0] == event_id or row[1] > run_id):
                return False
            self._db.execute(
                "INSERT OR REPLACE INTO sources (key, event_id, run_id, best, review) VALUES (?, ?, ?, ?, ?)",
                (key, event_id, run_id, _best(review), json.dumps(review)),
            )
            self.version += 1
        return True

    def add_applied(self, event_id: str, data: dict[str, Any]) -> None:
        """Keep a ``review.applied``; a refusal puts the sources it answers back in the queue, with its reason."""
        with self._lock, self._db:
            self._db.execute("INSERT OR IGNORE INTO applied VALUES (?, ?)", (event_id, json.dumps(data)))
            if data.get("reason") is not None:
                note = f"your decision was not applied ({data['reason']}): decide again"
                self._db.execute(
                    "UPDATE sources SET decision = NULL, note = ? WHERE applied_id = ? AND decision IS NOT NULL",
                    (note, event_id),
                )
            self.version += 1

    def waiting(self, key: str) -> dict[str, Any] | None:
        """The review of a source still in the queue."""
        with self._lock:
            row = self._db.execute("SELECT review FROM sources WHERE key = ? AND decision IS NULL", (key,)).fetchone()
        return None if row is None else {**json.loads(row[0]), "key": key}

    def decided(self, key: str, decision: dict[str, Any], answer_id: str) -> None:
        """The source's decision was published: it leaves the queue, awaiting ``answer_id``."""
        with self._lock, self._db:
            self._db.execute(
                "UPDATE sources SET decision = ?, applied_id = ?, decided_at = ?, note = NULL WHERE key = ?",
                (json.dumps(decision), answer_id, time.time(), key),
            )
            self.version += 1

    def queue(self, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
        """The first ``limit`` sources waiting, the best-scored first, each its review plus ``key`` and ``note``; and
        how many wait in all (a page of ten thousand sources helps nobody)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, review, note FROM sources WHERE decision IS NULL"
                " ORDER BY best IS NULL, best DESC, key LIMIT ?",
                (limit,),
            ).fetchall()
            (total,) = self._db.execute("SELECT count(*) FROM sources WHERE decision IS NULL").fetchone()
        return [{**json.loads(review), "key": key, "note": note} for key, review, note in rows], int(total)

    def recent(self, limit: int = 30) -> list[dict[str, Any]]:
        """The latest decisions sent, each its review, ``decision`` and ``applied`` (null until it comes)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT s.key, s.review, s.decision, a.data FROM sources s LEFT JOIN applied a"
                " ON a.event_id = s.applied_id WHERE s.decision IS NOT NULL ORDER BY s.decided_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            {**json.loads(review), "key": key, "decision": json.loads(decision), "applied": data and json.loads(data)}
            for key, review, decision, data in rows
        ]
