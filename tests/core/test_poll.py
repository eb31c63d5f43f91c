"""Section 4 of the contract, row by row, through the function as deployed.

Each test scripts the CDF simulator, delivers one trigger to the function
(functions-framework) and checks the HTTP answer and what a subscriber pulls
from the real Pub/Sub emulator.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import pytest

from handlers.cdf.httpio import retry_after
from handlers.core.errors import BudgetExhausted, ShuttingDown, TransientError, WaitTimeout
from handlers.core.poll import Backoff, Clock, Deadlines, Poller
from sim import CdfSimulator, Step, make_run
from tests.conftest import PubSub, Topics, deliver, load_app, pubsub_message

TRIGGER = {"pipelineId": 1, "runId": 456}
DONE = Step.run(make_run(2, 1, 1))


def relay(client: Any, pubsub: PubSub, topics: Topics, **message: Any) -> tuple[int, list[Any], list[Any]]:
    """Deliver the trigger; return the HTTP status and what the events and error subscribers got."""
    response = deliver(client, pubsub_message(TRIGGER, **message))
    return response.status_code, pubsub.drain(topics.events_sub), pubsub.drain(topics.errors_sub)


def only_failure(events: list[Any], errors: list[Any]) -> Any:
    assert events == []
    assert len(errors) == 1
    return errors[0]


def test_poll_completed_publishes_results(client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics) -> None:
    """A Completed run publishes every match and rule event and run.completed, then answers 200."""
    sim.set_run(1, 456, [DONE])
    status, events, errors = relay(client, pubsub, topics)
    assert status == 200
    assert sorted(e.attributes["ce-subject"] for e in events) == [
        "generatedrule/0",
        "match/0",
        "match/1",
        "run",
        "suggestedrule/0",
    ]
    assert errors == []


@pytest.mark.parametrize("status", ["Queued", "Running", "Scheduled"])
def test_poll_unfinished_status_polls_again(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, status: str
) -> None:
    """Any status but Completed or Failed is polled again until the run finishes."""
    sim.set_run(1, 456, [Step.status(status), Step.status(status), DONE])
    code, events, _ = relay(client, pubsub, topics)
    assert code == 200
    assert len(sim.cdf_requests()) == 3
    assert [e.attributes["ce-subject"] for e in events][-1] == "run"


def test_poll_failed_run_publishes_run_failed(client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics) -> None:
    """A Failed run gives run.failed with reason run_failed and CDF's own message, on the error topic."""
    body = make_run(0, status="Failed", error_message="Source dataset is empty", errors=["no sources"])
    sim.set_run(1, 456, [Step.status("Running"), Step.run(body)])
    code, events, errors = relay(client, pubsub, topics)
    failure = only_failure(events, errors)
    assert code == 200
    assert failure.attributes["ce-reason"] == "run_failed"
    assert failure.attributes["ce-id"] == "demo/1/456/run/failed/run_failed"
    assert failure.data["errorMessage"] == "Source dataset is empty"
    assert failure.data["errors"] == ["no sources"]
    assert failure.data["status"] == "Failed"
    assert failure.data["statusTime"] == body["statusTime"]


TRANSIENT = {
    "429": Step.throttle(),
    "429 with Retry-After": Step.throttle("0"),
    "500": Step.error(500),
    "502": Step.error(502),
    "503": Step.error(503),
    "504": Step.error(504),
    "501 (any 5xx)": Step.error(501),
    "520 from a proxy": Step.error(520),
    "400 marked cdf-is-auto-retryable": Step.error(400, headers={"cdf-is-auto-retryable": "true"}),
    "connection dropped": Step.drop(),
    "timeout": Step.slow(3.0, DONE),
    "malformed once": Step.raw(200, b"{not json"),
    "body that cannot be decompressed": Step.raw(200, b"not gzip at all", headers={"Content-Encoding": "gzip"}),
}


@pytest.mark.parametrize("fault", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_poll_transient_answer_is_retried(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, fault: Step
) -> None:
    """429, 5xx, cdf-is-auto-retryable, dropped connections and timeouts are retried, and the run completes."""
    sim.set_run(1, 456, [fault, fault, DONE])
    code, events, errors = relay(client, pubsub, topics)
    assert code == 200
    assert len(sim.cdf_requests()) == 3
    assert errors == []
    assert events[-1].attributes["ce-type"] == "com.cognite.entitymatching.run.completed"


PERMANENT = {
    "403": (Step.error(403, "Resource not found"), "access_denied"),
    "404": (Step.error(404, "Run 456 not found"), "run_not_found"),
    "400": (Step.error(400, "Bad request"), "invalid_request"),
    "409": (Step.error(409, "Conflict"), "invalid_request"),
    "422": (Step.error(422, "Unprocessable"), "invalid_request"),
}


@pytest.mark.parametrize(("answer", "reason"), PERMANENT.values(), ids=PERMANENT.keys())
def test_poll_permanent_answer_publishes_run_failed(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, answer: Step, reason: str
) -> None:
    """403, 404 and other 4xx end at once with run.failed carrying the reason and CDF's message, and 200."""
    sim.set_run(1, 456, [answer])
    code, events, errors = relay(client, pubsub, topics)
    failure = only_failure(events, errors)
    assert code == 200
    assert len(sim.cdf_requests()) == 1
    assert failure.attributes["ce-reason"] == reason
    assert failure.data["reason"] == reason
    assert answer.body is not None
    assert str(answer.body.decode()).split('"message": "')[1].split('"')[0] in failure.data["errorMessage"]


def test_poll_401_fetches_a_new_token_and_retries(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A 401 on a cached token fetches a new token and retries; the run completes."""
    sim.set_run(1, 456, [DONE])
    assert relay(client, pubsub, topics)[0] == 200
    sim.expire_tokens()
    code, events, errors = relay(client, pubsub, topics)
    assert code == 200
    assert len(sim.token_requests()) == 2
    assert [r.headers["authorization"] for r in sim.cdf_requests()][-2] != sim.cdf_requests()[-1].headers[
        "authorization"
    ]
    assert errors == []
    assert events[-1].attributes["ce-subject"] == "run"


def test_poll_401_on_fresh_token_is_access_denied(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """401s on 3 tokens in a row, each fetched just now, give run.failed with reason access_denied, without a loop."""
    sim.set_run(1, 456, [Step.error(401, "Unauthorized")])
    code, events, errors = relay(client, pubsub, topics)
    assert code == 200
    assert only_failure(events, errors).attributes["ce-reason"] == "access_denied"
    assert len(sim.token_requests()) == 3
    assert len(sim.cdf_requests()) == 3


def test_poll_malformed_bodies_retry_three_times_then_invalid_response(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """Bodies that are not JSON or not a run are retried 3 times in a row; the 4th gives invalid_response."""
    sim.set_run(
        1,
        456,
        [
            Step.raw(200, b"{not json"),
            Step.raw(200, b"[]"),
            Step.raw(200, b'{"status": 5}'),
            Step.raw(200, b'{"status": "Completed", "matches": {}}'),
            DONE,
        ],
    )
    code, events, errors = relay(client, pubsub, topics)
    assert code == 200
    assert only_failure(events, errors).attributes["ce-reason"] == "invalid_response"
    assert len(sim.cdf_requests()) == 4


def test_poll_malformed_streak_resets_on_a_good_answer(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """Three malformed bodies, a Running answer, three more: still retried, and the run completes."""
    bad = Step.raw(200, b"<html>proxy error</html>", content_type="text/html")
    sim.set_run(1, 456, [bad, bad, bad, Step.status("Running"), bad, bad, bad, DONE])
    code, events, errors = relay(client, pubsub, topics)
    assert code == 200
    assert errors == []
    assert events[-1].attributes["ce-subject"] == "run"


@pytest.mark.parametrize(
    "answer", [Step.error(400, "bad grant"), Step.error(401, "invalid_client")], ids=["400", "401"]
)
def test_poll_token_endpoint_refusal_is_auth_failed(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, answer: Step
) -> None:
    """The token endpoint answering 400 or 401 gives run.failed with reason auth_failed; CDF is not asked."""
    sim.set_run(1, 456, [DONE])
    sim.token_steps = [answer]
    code, events, errors = relay(client, pubsub, topics)
    assert code == 200
    assert only_failure(events, errors).attributes["ce-reason"] == "auth_failed"
    assert sim.cdf_requests() == []


def test_poll_wrong_client_secret_is_auth_failed(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A client secret the identity provider rejects gives auth_failed, and the secret is in no event."""
    monkeypatch.setenv("IDP_CLIENT_SECRET", "wrong-secret-0042")
    sim.set_run(1, 456, [DONE])
    code, events, errors = relay(load_app().test_client(), pubsub, topics)
    failure = only_failure(events, errors)
    assert code == 200
    assert failure.attributes["ce-reason"] == "auth_failed"
    assert b"wrong-secret-0042" not in failure.raw


def test_poll_token_endpoint_outage_is_retried(client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics) -> None:
    """A 503 or a dropped connection at the token endpoint is transient: retried, then the run completes."""
    sim.set_run(1, 456, [DONE])
    sim.token_steps = [Step.error(503), Step.drop()]
    code, events, _ = relay(client, pubsub, topics)
    assert code == 200
    assert len(sim.token_requests()) == 3
    assert events[-1].attributes["ce-subject"] == "run"


def test_poll_budget_spent_hands_the_message_back(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    sim: CdfSimulator,
    pubsub: PubSub,
    topics: Topics,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """When POLL_BUDGET_S runs out on a running job the function answers non-2xx, publishes nothing, logs INFO."""
    monkeypatch.setenv("POLL_BUDGET_S", "0.3")
    sim.set_run(1, 456, [Step.status("Running")])
    code, events, errors = relay(load_app().test_client(), pubsub, topics)
    assert code == 503
    assert events == []
    assert errors == []
    assert len(sim.cdf_requests()) >= 2
    summary = [line for line in capfd.readouterr().out.splitlines() if '"outcome": "handed_back"' in line]
    assert len(summary) == 1
    assert '"severity": "INFO"' in summary[0]


def test_poll_old_trigger_is_wait_timeout(client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics) -> None:
    """A trigger older than RUN_MAX_WAIT_S on an unfinished run gives run.failed wait_timeout and 200."""
    sim.set_run(1, 456, [Step.status("Running")])
    code, events, errors = relay(client, pubsub, topics, publish_time="2024-01-01T00:00:00.000Z")
    failure = only_failure(events, errors)
    assert code == 200
    assert failure.attributes["ce-reason"] == "wait_timeout"
    assert failure.data["status"] == "Running"
    assert len(sim.cdf_requests()) == 1


def test_poll_old_trigger_on_finished_run_still_publishes(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """An old trigger whose run is already finished publishes the run's events: the poll comes first."""
    sim.set_run(1, 456, [DONE])
    code, events, errors = relay(client, pubsub, topics, publish_time="2024-01-01T00:00:00.000Z")
    assert code == 200
    assert errors == []
    assert events[-1].attributes["ce-subject"] == "run"


def test_poll_request_carries_auth_version_and_user_agent(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """Each CDF request has the bearer token, cdf-version: beta and a matchrelay User-Agent."""
    sim.set_run(1, 456, [DONE])
    relay(client, pubsub, topics)
    request = sim.cdf_requests()[0]
    assert request.path == "/api/v1/projects/demo/context/entitymatching/pipelines/1/runs/456"
    assert request.headers["authorization"].startswith("Bearer ")
    assert request.headers["cdf-version"] == "beta"
    assert request.headers["user-agent"].startswith("matchrelay/")
    token = sim.token_requests()[0]
    assert b"grant_type=client_credentials" in token.body
    assert b"scope=" in token.body


def test_poll_empty_api_version_sends_no_header(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """CDF_API_VERSION set empty sends no cdf-version header."""
    monkeypatch.setenv("CDF_API_VERSION", "")
    sim.set_run(1, 456, [DONE])
    relay(load_app().test_client(), pubsub, topics)
    assert "cdf-version" not in sim.cdf_requests()[0].headers


def test_poll_static_token_is_used_as_is(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """CDF_TOKEN is sent as the bearer token and the token endpoint is never called."""
    for name in ("IDP_TOKEN_URL", "IDP_CLIENT_ID", "IDP_CLIENT_SECRET"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("CDF_TOKEN", "static-token-123")
    sim.static_tokens.add("static-token-123")
    sim.set_run(1, 456, [DONE])
    code, events, _ = relay(load_app().test_client(), pubsub, topics)
    assert code == 200
    assert sim.token_requests() == []
    assert sim.cdf_requests()[0].headers["authorization"] == "Bearer static-token-123"
    assert events[-1].attributes["ce-subject"] == "run"


def test_poll_retry_after_http_date_is_honoured(client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics) -> None:
    """A Retry-After given as an HTTP date in the past means: poll again at once; the run completes."""
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    sim.set_run(1, 456, [Step.throttle(past), DONE])
    code, events, _ = relay(client, pubsub, topics)
    assert code == 200
    assert events[-1].attributes["ce-subject"] == "run"


# The state machine alone, on a fake clock: what it waits, and when it stops waiting.


class FakeClock:
    def __init__(self, shutdown_after: int | None = None) -> None:
        self.now, self.sleeps, self._shutdown_after = 0.0, list[float](), shutdown_after

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append(seconds)
        self.now += seconds
        return self._shutdown_after is not None and len(self.sleeps) >= self._shutdown_after

    def poller(self, initial: float = 1.0, cap: float = 30.0) -> Poller:
        import random

        return Poller(Backoff(initial, cap), Clock(lambda: self.now, self.sleep, random.Random(7)))


def answers(*script: Any) -> Any:
    """A step that raises or returns the scripted values in order."""
    items = iter(script)

    def step() -> Any:
        item = next(items)
        if isinstance(item, Exception):
            raise item
        return item

    return step


def test_poll_retry_after_sets_the_wait() -> None:
    """A Retry-After of 7 s is waited exactly, instead of the backoff."""
    clock = FakeClock()
    result = clock.poller().until_done(
        answers(TransientError("429", retry_after=7.0), "done"), Deadlines(budget=None, wait=1e9)
    )
    assert result == "done"
    assert clock.sleeps == [7.0]


def test_poll_waits_follow_the_backoff() -> None:
    """Unfinished answers are polled again after waits between initial and the cap."""
    clock = FakeClock()
    clock.poller(1.0, 4.0).until_done(answers(None, None, None, None, "done"), Deadlines(None, 1e9))
    assert clock.sleeps[0] == 1.0
    assert all(1.0 <= s <= 4.0 for s in clock.sleeps)
    assert len(clock.sleeps) == 4


def test_poll_budget_hands_back_instead_of_sleeping_past_it() -> None:
    """When the next wait would overrun the budget, BudgetExhausted is raised before sleeping."""
    clock = FakeClock()
    with pytest.raises(BudgetExhausted):
        clock.poller(1.0, 1.0).until_done(answers(*[None] * 100), Deadlines(budget=5.5, wait=1e9))
    assert sum(clock.sleeps) <= 5.5
    assert len(clock.sleeps) == 5


def test_poll_retry_after_beyond_budget_hands_back() -> None:
    """A Retry-After longer than the remaining budget hands the message back at once."""
    clock = FakeClock()
    with pytest.raises(BudgetExhausted):
        clock.poller().until_done(answers(TransientError("429", retry_after=600.0)), Deadlines(480.0, 1e9))
    assert clock.sleeps == []


def test_poll_wait_deadline_polls_once_more_then_times_out() -> None:
    """The last wait is cut to the max-wait deadline, polled once more, then WaitTimeout."""
    clock = FakeClock()
    poller = clock.poller(10.0, 10.0)
    with pytest.raises(WaitTimeout):
        poller.until_done(answers(None, None, None), Deadlines(budget=None, wait=15.0))
    assert clock.sleeps == [10.0, 5.0]
    assert poller.stats.polls == 3


def test_poll_shutdown_hands_back() -> None:
    """A sleep woken by shutdown raises ShuttingDown, so the message goes back to Pub/Sub."""
    clock = FakeClock(shutdown_after=1)
    with pytest.raises(ShuttingDown):
        clock.poller().until_done(answers(None, "done"), Deadlines(None, 1e9))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("0", 0.0),
        ("120", 120.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0),
        ("soon", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:26:00 GMT", 0.0),
    ],
)
def test_poll_retry_after_header_parses_seconds_and_dates(header: str | None, expected: float | None) -> None:
    """Retry-After is read as delta-seconds or an HTTP date (relative to now); nonsense is ignored."""
    now = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:27:00 GMT").timestamp()
    assert retry_after(header, now) == expected


def test_poll_retry_after_zero_never_shortens_the_backoff() -> None:
    """A Retry-After of 0 (or a date in the past) waits the backoff, so CDF is not hammered."""
    clock = FakeClock()
    clock.poller(2.0, 2.0).until_done(
        answers(TransientError("429", retry_after=0.0), TransientError("429", retry_after=0.0), "done"),
        Deadlines(None, 1e9),
    )
    assert clock.sleeps == [2.0, 2.0]


def test_poll_retry_after_ignores_non_ascii_digits() -> None:
    """A Retry-After of unicode digits is ignored rather than crashing the invocation."""
    assert retry_after("\u00b2", 0.0) is None


def test_poll_completed_run_with_null_errors_publishes(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """errors: null is "no errors": the results are published and run.completed carries []."""
    sim.set_run(1, 456, [Step.run({**make_run(1), "errors": None})])
    code, events, errors = relay(client, pubsub, topics)
    assert code == 200
    assert errors == []
    assert [e.data["errors"] for e in events if e.attributes["ce-subject"] == "run"] == [[]]
