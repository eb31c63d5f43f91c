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
"""

from __future__ import annotations

from typing import get_args

from handlers.core.models import Reason


class RelayError(Exception):
    """Base of every error the worker raises on purpose."""


class ConfigError(RelayError):
    """A setting is missing or contradicts another; the message names the variable."""


class PermanentError(RelayError):
    """Retrying cannot help: answer with a ``run.failed`` event and ack."""

    reason = "invalid_request"


class InvalidTrigger(PermanentError):
    """The trigger message cannot name a run; no request is sent to CDF."""

    reason = "invalid_trigger"


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


class NoProgress(HandBack):
    """A continuation's segment had no time to publish anything: redeliver rather than continue in a loop."""

    code = "no_progress"


class ShuttingDown(HandBack):
    """The instance got SIGTERM; hand the message back rather than lose it."""

    code = "shutting_down"


#: Every reason a ``run.failed`` event can carry (contract, section 5), as the models declare them.
REASONS: tuple[str, ...] = get_args(Reason)
