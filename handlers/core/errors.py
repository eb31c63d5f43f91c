"""The worker's one error tree.

Every failure the worker can meet is translated once, at the edge where it
happens (HTTP answer, trigger body, settings, Pub/Sub future), into one of these:

- ``PermanentError``: retrying cannot help. The worker publishes a ``run.failed``
  event carrying ``reason`` and acks the message (HTTP 200).
- ``TransientError``: CDF or the token endpoint may answer better later. The
  poller retries it with backoff inside the invocation's budget.
- ``HandBack``: this invocation stops and answers non-2xx, so Pub/Sub redelivers
  the message later (budget spent, publish failed, shutting down, a
  continuation with no time to move on).

What hands on is not an error: when the invocation's deadline comes before the
end of a completed run, the relay publishes a continuation trigger and acks.
- ``ConfigError``: a missing or contradictory setting; start-up stops.

Every error a flow raises on purpose is one of these classes, each one idea:
a permanent error names its reason (there is no default, so an unlabelled one
cannot report as a bad request), a hand-back its code (the summary line's
``reason``).
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, get_args

from handlers.core.models import Reason


class RelayError(Exception):
    """Base of every error the worker raises on purpose."""


class ConfigError(RelayError):
    """A setting is missing or contradicts another; the message names the variable."""


class PermanentError(RelayError):
    """Retrying cannot help: answer with a ``run.failed`` event and ack. Each kind names its reason."""

    reason: ClassVar[str]


class InvalidTrigger(PermanentError):
    """The trigger message cannot name a run, with the coordinates that could be read (for the error event); no
    request is sent to CDF."""

    reason = "invalid_trigger"

    def __init__(
        self,
        message: str,
        *,
        message_id: str = "",
        project: str | None = None,
        pipeline_id: int | None = None,
        run_id: int | None = None,
        publish_time: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.message_id = message_id
        self.project = project
        self.pipeline_id = pipeline_id
        self.run_id = run_id
        self.publish_time = publish_time


class InvalidDecision(PermanentError):
    """A decisions message that cannot be applied (contract, section 10), with the project and pipeline it could
    read; no request is sent to CDF."""

    reason = "invalid_decision"

    def __init__(self, message: str, *, project: str | None = None, pipeline_id: int | None = None) -> None:
        super().__init__(message)
        self.project, self.pipeline_id = project, pipeline_id


class RunFailed(PermanentError):
    """CDF says the run failed: there is nothing to link."""

    reason = "run_failed"


class RunNotFound(PermanentError):
    """CDF answered 404 for the run (or for the pipeline's latest run)."""

    reason = "run_not_found"


class AccessDenied(PermanentError):
    """CDF answered 403, or 401 to a token fetched just now."""

    reason = "access_denied"


class AuthFailed(PermanentError):
    """The token endpoint refused the client credentials."""

    reason = "auth_failed"


class InvalidRequest(PermanentError):
    """CDF answered another 4xx: the request itself is wrong."""

    reason = "invalid_request"


class InvalidResponse(PermanentError):
    """CDF kept answering bodies that are not JSON or not the documented shape."""

    reason = "invalid_response"


class WaitTimeout(PermanentError):
    """The trigger is older than ``RUN_MAX_WAIT_S`` and the run is still not finished."""

    reason = "wait_timeout"


class TransientError(RelayError):
    """CDF or the token endpoint may answer better later; retry with backoff."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MalformedResponse(TransientError):
    """A body that is not JSON or not the documented shape; retried a bounded number of times."""


class HandBack(RelayError):
    """Stop here and answer non-2xx, so Pub/Sub redelivers the message later."""

    code = "handed_back"


class BudgetExhausted(HandBack):
    """``POLL_BUDGET_S`` ran out while the run was not finished."""

    code = "budget_exhausted"


class PublishFailed(HandBack):
    """Pub/Sub did not confirm every event; the redelivery publishes them again."""

    code = "publish_failed"


class NothingPublished(HandBack):
    """A continuation's segment had no time to publish anything: redeliver rather than continue in a loop."""

    code = "no_progress"


class OutOfTime(HandBack):
    """The invocation's deadline came before the work was done (a link's writes, a list's last page): answer
    non-2xx after the last confirmed write; a sweep catches it to hand the rest on."""

    code = "deadline"


class SweepTooLarge(HandBack):
    """One pipeline's runs could not all be read before the deadline: hand back and start over."""

    code = "sweep_too_large"


class ListsRaced(HandBack):
    """Another writer replaced the pipeline's lists after each of our writes (``pipelines/update`` sets a list
    whole, unguarded): hand back, and the redelivery merges again from what CDF holds then."""

    code = "lists_raced"


class ShuttingDown(HandBack):
    """The instance got SIGTERM; hand the message back rather than lose it."""

    code = "shutting_down"


#: Every reason a ``run.failed`` event can carry (contract, section 5), as the models declare them.
REASONS: tuple[str, ...] = get_args(Reason)
