"""The CDF simulator behaves like CDF and its identity provider, and obeys its script."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sim import CdfSimulator, Step, make_run, stream_run_body
from tests.conftest import ROOT

RUNS = "/api/v1/projects/demo/context/entitymatching/pipelines"
FORM = {
    "grant_type": "client_credentials",
    "client_id": "matchrelay",
    "client_secret": "s3cret",
    "scope": "https://example.cognitedata.com/.default",
}


@pytest.fixture
def sim() -> Iterator[CdfSimulator]:
    with CdfSimulator(project="demo", client_id="matchrelay", client_secret="s3cret") as started:
        yield started


@pytest.fixture
def client(sim: CdfSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=5) as http:
        yield http


def _token(client: httpx.Client, sim: CdfSimulator) -> str:
    answer = client.post(sim.token_url, data=FORM)
    assert answer.status_code == 200
    token: str = answer.json()["access_token"]
    return token


def _get(client: httpx.Client, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "cdf-version": "beta"} if token else {}
    return client.get(path, headers=headers, **kw)


def test_sim_token_issued_for_client_credentials(sim: CdfSimulator, client: httpx.Client) -> None:
    """Correct client credentials get a bearer token that CDF endpoints accept."""
    answer = client.post(sim.token_url, data=FORM)
    body = answer.json()
    assert (answer.status_code, body["token_type"], body["expires_in"]) == (
        200,
        "Bearer",
        3600,
    )
    sim.set_run(1, 2, [Step.status("Running")])
    assert _get(client, f"{RUNS}/1/runs/2", body["access_token"]).status_code == 200


def test_sim_token_wrong_secret_is_401_invalid_client(sim: CdfSimulator, client: httpx.Client) -> None:
    """A wrong client secret gets 401 with an OAuth invalid_client body."""
    answer = client.post(sim.token_url, data={**FORM, "client_secret": "nope"})
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({**FORM, "grant_type": "password"}, "unsupported_grant_type"),
        ({k: v for k, v in FORM.items() if k != "client_id"}, "invalid_request"),
        ({k: v for k, v in FORM.items() if k != "scope"}, "invalid_request"),
    ],
)
def test_sim_token_bad_request_is_400(
    sim: CdfSimulator, client: httpx.Client, form: dict[str, str], error: str
) -> None:
    """A wrong grant type or a missing field gets 400 with an OAuth error body."""
    answer = client.post(sim.token_url, data=form)
    assert (answer.status_code, answer.json()["error"]) == (400, error)


def test_sim_token_json_body_is_400(sim: CdfSimulator, client: httpx.Client) -> None:
    """The token endpoint wants a form, like real identity providers, not JSON."""
    assert client.post(sim.token_url, json=FORM).status_code == 400


def test_sim_token_steps_answer_before_normal_tokens(sim: CdfSimulator, client: httpx.Client) -> None:
    """Scripted token faults are answered in order, then tokens are issued again."""
    sim.token_steps = [Step.error(503), Step.drop()]
    assert client.post(sim.token_url, data=FORM).status_code == 503
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(sim.token_url, data=FORM)
    assert client.post(sim.token_url, data=FORM).status_code == 200
    assert len(sim.token_requests()) == 3


def test_sim_token_expires_after_ttl(client: httpx.Client) -> None:
    """A token stops working once its time to live has passed."""
    with CdfSimulator(token_ttl_s=0.2) as short:
        short.set_run(1, 2, [Step.status("Running")])
        token = _token(client, short)
        assert _get(client, f"{short.url}{RUNS}/1/runs/2", token).status_code == 200
        time.sleep(0.25)
        assert _get(client, f"{short.url}{RUNS}/1/runs/2", token).status_code == 401


def test_sim_expire_tokens_invalidates_issued_but_not_static(sim: CdfSimulator, client: httpx.Client) -> None:
    """expire_tokens() turns issued tokens into 401s while static tokens keep working."""
    sim.set_run(1, 2, [Step.status("Running")])
    sim.static_tokens.add("static-token")
    token = _token(client, sim)
    sim.expire_tokens()
    assert _get(client, f"{RUNS}/1/runs/2", token).status_code == 401
    assert _get(client, f"{RUNS}/1/runs/2", "static-token").status_code == 200


def test_sim_expire_tokens_older_than_spares_young_tokens(sim: CdfSimulator, client: httpx.Client) -> None:
    """expire_tokens(older_than_s=...) revokes only tokens issued longer ago, and says how many."""
    sim.set_run(1, 2, [Step.status("Running")])
    token = _token(client, sim)
    assert sim.expire_tokens(older_than_s=60) == 0
    assert _get(client, f"{RUNS}/1/runs/2", token).status_code == 200
    assert sim.expire_tokens(older_than_s=0) == 1
    assert _get(client, f"{RUNS}/1/runs/2", token).status_code == 401


def test_sim_cdf_without_token_is_401(sim: CdfSimulator, client: httpx.Client) -> None:
    """A CDF call without a bearer token gets 401 with CDF's error body."""
    sim.set_run(1, 2, [Step.status("Running")])
    answer = _get(client, f"{RUNS}/1/runs/2")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == 401


def test_sim_wrong_project_is_403(sim: CdfSimulator, client: httpx.Client) -> None:
    """A project other than the simulator's gets 403 with CDF's error body."""
    path = "/api/v1/projects/other/context/entitymatching/pipelines/1/runs/2"
    answer = _get(client, path, _token(client, sim))
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, 403)


def test_sim_unscripted_run_is_404(sim: CdfSimulator, client: httpx.Client) -> None:
    """A run nobody scripted gets 404, also for latest and for unknown endpoints."""
    token = _token(client, sim)
    sim.set_run(1, 2, [Step.status("Running")])
    for path in (
        f"{RUNS}/1/runs/3",
        f"{RUNS}/9/runs/2",
        f"{RUNS}/1/runs/latest",
        "/api/v1/x",
    ):
        answer = _get(client, path, token)
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, 404), path


@pytest.mark.parametrize("run", ["abc", "0", "-1", "1.5", "9007199254740992"])
def test_sim_invalid_id_is_400(sim: CdfSimulator, client: httpx.Client, run: str) -> None:
    """A run id that is not an integer in 1..2**53-1 gets 400."""
    assert _get(client, f"{RUNS}/1/runs/{run}", _token(client, sim)).status_code == 400


def test_sim_steps_consumed_in_order_last_repeats(sim: CdfSimulator, client: httpx.Client) -> None:
    """Each GET takes the next step and the last step answers forever after."""
    sim.set_run(1, 2, [Step.status("Queued", 2), Step.status("Running", 2), Step.error(503)])
    token = _token(client, sim)
    answers = [_get(client, f"{RUNS}/1/runs/2", token) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 503, 503, 503]
    assert [a.json()["status"] for a in answers[:2]] == ["Queued", "Running"]
    assert answers[0].json()["startTime"] is None
    assert answers[1].json()["startTime"] is not None


def test_sim_latest_scripted_and_query_recorded(sim: CdfSimulator, client: httpx.Client) -> None:
    """runs/latest has its own script, and the query string is recorded."""
    sim.set_latest(1, [Step.status("Running", 456)])
    answer = _get(
        client,
        f"{RUNS}/1/runs/latest",
        _token(client, sim),
        params={"includeSkipped": "false"},
    )
    assert answer.json()["jobId"] == 456
    assert sim.cdf_requests()[-1].query == {"includeSkipped": "false"}


@pytest.mark.parametrize("value", ["7", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_sim_throttle_sends_retry_after(sim: CdfSimulator, client: httpx.Client, value: str) -> None:
    """A throttle step answers 429 with the exact Retry-After value given."""
    sim.set_run(1, 2, [Step.throttle(value), Step.throttle()])
    token = _token(client, sim)
    first, second = (_get(client, f"{RUNS}/1/runs/2", token) for _ in range(2))
    assert (first.status_code, first.headers["retry-after"]) == (429, value)
    assert second.status_code == 429
    assert "retry-after" not in second.headers


def test_sim_error_headers_are_sent(sim: CdfSimulator, client: httpx.Client) -> None:
    """Extra headers on an error step reach the client (e.g. cdf-is-auto-retryable)."""
    sim.set_run(1, 2, [Step.error(409, "Conflict", {"cdf-is-auto-retryable": "true"})])
    answer = _get(client, f"{RUNS}/1/runs/2", _token(client, sim))
    assert answer.headers["cdf-is-auto-retryable"] == "true"
    assert answer.json() == {"error": {"code": 409, "message": "Conflict"}}


def test_sim_drop_gives_connection_error(sim: CdfSimulator, client: httpx.Client) -> None:
    """A drop step closes the socket unanswered, and the next request is served."""
    sim.set_run(1, 2, [Step.drop(), Step.status("Running")])
    token = _token(client, sim)
    with pytest.raises(httpx.RemoteProtocolError):
        _get(client, f"{RUNS}/1/runs/2", token)
    assert _get(client, f"{RUNS}/1/runs/2", token).status_code == 200


def test_sim_slow_triggers_client_timeout(sim: CdfSimulator, client: httpx.Client) -> None:
    """A slow step outlasts a short client timeout."""
    sim.set_run(1, 2, [Step.slow(2, Step.status("Running"))])
    token = _token(client, sim)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        _get(client, f"{RUNS}/1/runs/2", token, timeout=0.2)
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"status": 5}', b'{"status": "Compl'])
def test_sim_raw_bytes_returned(sim: CdfSimulator, client: httpx.Client, body: bytes) -> None:
    """A raw step answers exactly the given bytes and status."""
    sim.set_run(1, 2, [Step.raw(502, body, content_type="text/plain")])
    answer = _get(client, f"{RUNS}/1/runs/2", _token(client, sim))
    assert (answer.status_code, answer.content) == (502, body)
    assert answer.headers["content-type"] == "text/plain"


def test_sim_stream_is_chunked(sim: CdfSimulator, client: httpx.Client) -> None:
    """A stream step sends a chunked body equal to make_run's JSON."""
    sim.set_run(1, 2, [Step.stream(lambda: stream_run_body(3000, 5, 5))])
    token = _token(client, sim)
    for _ in range(2):  # the step repeats, so each answer needs a fresh iterator
        answer = _get(client, f"{RUNS}/1/runs/2", token)
        assert answer.headers["transfer-encoding"] == "chunked"
        assert answer.json() == make_run(3000, 5, 5)


@pytest.mark.parametrize(("n", "s", "g"), [(0, 0, 0), (1, 0, 0), (14, 3, 2), (2000, 4, 4)])
def test_sim_stream_run_body_equals_make_run(n: int, s: int, g: int) -> None:
    """The streamed body is byte-for-byte json.dumps(make_run(...)), in bounded chunks."""
    kwargs: dict[str, Any] = {
        "errors": ["row 3: bad"],
        "status": "Completed",
        "job_id": 7,
    }
    chunks = list(stream_run_body(n, s, g, chunk_size=4096, **kwargs))
    assert b"".join(chunks) == json.dumps(make_run(n, s, g, **kwargs)).encode()
    assert all(len(chunk) < 4096 + 2048 for chunk in chunks)


def test_sim_make_run_has_documented_shape_and_variety() -> None:
    """make_run gives consistent indices, both match types, unicode and missing keys."""
    run = make_run(14, 3, 2)
    matches = run["matches"]
    assert {m["matchType"] for m in matches} == {"model", "previously-confirmed"}
    assert any(m["source"]["name"] == "Pompe 1-Ø ∆" for m in matches)
    assert any("externalId" not in m["source"] for m in matches)
    for rule in run["suggestedRules"]:
        assert rule["numMatches"] == len(rule["matchIndex"]) == len(rule["matches"])
        picked = [matches[i]["source"] for i in rule["matchIndex"]]
        assert picked == [m["source"] for m in rule["matches"]]
    assert run["statusTime"] == run["createdTime"] + 60_000


def test_sim_stream_run_body_is_lazy() -> None:
    """The first chunk of a huge body arrives without building the body."""
    started = time.monotonic()
    first = next(iter(stream_run_body(10**9)))
    assert first.startswith(b'{"status": "Completed"')
    assert time.monotonic() - started < 1


def test_sim_every_response_has_unique_request_id(sim: CdfSimulator, client: httpx.Client) -> None:
    """Every answer, token or CDF, success or error, carries its own X-Request-ID."""
    sim.set_run(1, 2, [Step.status("Running")])
    token = _token(client, sim)
    answers = [
        client.post(sim.token_url, data=FORM),
        _get(client, f"{RUNS}/1/runs/2", token),
        _get(client, f"{RUNS}/1/runs/2"),
        _get(client, f"{RUNS}/1/runs/3", token),
    ]
    ids = [a.headers.get("x-request-id") for a in answers]
    assert all(ids)
    assert len(set(ids)) == len(ids)


def test_sim_requests_recorded_with_headers(sim: CdfSimulator, client: httpx.Client) -> None:
    """Requests are recorded in order with lower-cased headers, split by endpoint."""
    sim.set_run(1, 2, [Step.status("Running")])
    token = _token(client, sim)
    _get(client, f"{RUNS}/1/runs/2", token)
    assert [r.method for r in sim.requests] == ["POST", "GET"]
    (token_request,), (cdf_request,) = sim.token_requests(), sim.cdf_requests()
    assert b"grant_type=client_credentials" in token_request.body
    assert cdf_request.headers["cdf-version"] == "beta"
    assert cdf_request.headers["authorization"] == f"Bearer {token}"
    assert cdf_request.path == f"{RUNS}/1/runs/2"


def test_sim_reset_clears_state(sim: CdfSimulator, client: httpx.Client) -> None:
    """reset() forgets scripts, tokens, token faults and recorded requests."""
    sim.set_run(1, 2, [Step.status("Running")])
    token = _token(client, sim)
    sim.token_steps.append(Step.error(500))
    sim.reset()
    assert (sim.requests, sim.token_steps) == ([], [])
    assert _get(client, f"{RUNS}/1/runs/2", token).status_code == 401


def test_sim_cli_serves_demo_scenario() -> None:
    """`python -m sim` prints its URLs as JSON, serves the demo run, and exits 0 on SIGTERM."""
    args = [sys.executable, "-m", "sim", "--port", "0", "--scenario", "demo"]
    with subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        urls = json.loads(process.stdout.readline())
        with httpx.Client(base_url=urls["url"], timeout=5) as http:
            token = http.post(urls["token_url"], data=FORM).json()["access_token"]
            statuses = [_get(http, f"{RUNS}/1/runs/456", token).json()["status"] for _ in range(4)]
            failed = [_get(http, f"{RUNS}/2/runs/789", token).json() for _ in range(2)]
        process.terminate()
        assert process.wait(timeout=5) == 0
    assert statuses == ["Queued", "Running", "Running", "Completed"]
    assert [f["status"] for f in failed] == ["Running", "Failed"]
    assert failed[1]["errorMessage"] == "Source dataset is empty"


# --- the list endpoints ---------------------------------------------------------------------------------------


def _every_page(client: httpx.Client, path: str, token: str, limit: int | None = None) -> list[list[dict[str, Any]]]:
    """Every page of a list, following nextCursor until it is absent."""
    found, cursor = [], None
    while True:
        params = {k: v for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
        answer = _get(client, path, token, params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        found.append(body["items"])
        cursor = body.get("nextCursor")
        if cursor is None:
            return found


def test_sim_lists_pipelines_in_pages_with_their_fields(sim: CdfSimulator, client: httpx.Client) -> None:
    """GET .../pipelines pages by limit and cursor; pipelines have id, externalId, name, scheduleInterval, lastRun."""
    for pipeline_id in range(1, 8):
        sim.add_pipeline(pipeline_id, schedule_interval=900 if pipeline_id % 2 else None)
    sim.add_run(3, 30, 1_000, "Completed")
    sim.add_run(3, 31, 2_000, "Running")
    pages = _every_page(client, RUNS, _token(client, sim), limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    pipelines = {p["id"]: p for page in pages for p in page}
    assert sorted(pipelines) == list(range(1, 8))
    assert {"id", "externalId", "name", "scheduleInterval", "lastRun"} <= set(pipelines[3])
    assert pipelines[3]["lastRun"]["jobId"] == 31
    assert not {"scheduleInterval", "lastRun"} & set(pipelines[2])


def test_sim_lists_runs_as_summaries_in_a_shuffled_order(sim: CdfSimulator, client: httpx.Client) -> None:
    """GET .../pipelines/{id}/runs gives run summaries (no results), 100 a page by default, not in id order."""
    for job_id in range(1, 251):
        sim.add_run(5, job_id, 1_000 * job_id, "Completed")
    pages = _every_page(client, f"{RUNS}/5/runs", _token(client, sim))
    runs = [r for page in pages for r in page]
    assert [len(p) for p in pages] == [100, 100, 50]
    assert sorted(r["jobId"] for r in runs) == list(range(1, 251))
    assert [r["jobId"] for r in runs] != sorted(r["jobId"] for r in runs)
    assert set(runs[0]) == {"status", "createdTime", "startTime", "statusTime", "jobId", "errorMessage"}


def test_sim_list_order_is_deterministic_per_seed(client: httpx.Client) -> None:
    """The same seed gives the same order; another seed another order."""
    orders = []
    for seed in (1, 1, 2):
        with CdfSimulator(seed=seed) as seeded:
            for job_id in range(1, 30):
                seeded.add_run(1, job_id, job_id, "Completed")
            seeded.static_tokens.add("t")
            orders.append([r["jobId"] for r in _get(client, f"{seeded.url}{RUNS}/1/runs", "t").json()["items"]])
    assert orders[0] == orders[1] != orders[2]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        pytest.param({"limit": "0"}, 400, id="limit-zero"),
        pytest.param({"limit": "101"}, 400, id="limit-over-100"),
        pytest.param({"limit": "x"}, 400, id="limit-not-a-number"),
        pytest.param({"cursor": "not-a-cursor"}, 400, id="bad-cursor"),
        pytest.param({"limit": "100"}, 200, id="limit-100"),
    ],
)
def test_sim_list_checks_limit_and_cursor(
    sim: CdfSimulator, client: httpx.Client, params: dict[str, str], code: int
) -> None:
    """limit must be 1..100 and a cursor one the list handed out."""
    sim.add_pipeline(1)
    assert _get(client, RUNS, _token(client, sim), params=params).status_code == code


def test_sim_list_cursor_of_another_list_is_rejected(sim: CdfSimulator, client: httpx.Client) -> None:
    """A cursor belongs to the list that gave it."""
    for job_id in range(1, 4):
        sim.add_run(1, job_id, job_id, "Completed")
        sim.add_run(2, job_id, job_id, "Completed")
    token = _token(client, sim)
    cursor = _get(client, f"{RUNS}/1/runs", token, params={"limit": 1}).json()["nextCursor"]
    assert _get(client, f"{RUNS}/2/runs", token, params={"cursor": cursor}).status_code == 400


def test_sim_list_runs_of_unknown_pipeline_is_404(sim: CdfSimulator, client: httpx.Client) -> None:
    """A pipeline that is not there answers 404 on its runs; another project 403."""
    token = _token(client, sim)
    assert _get(client, f"{RUNS}/9/runs", token).status_code == 404
    assert _get(client, "/api/v1/projects/other/context/entitymatching/pipelines", token).status_code == 403


def test_sim_script_list_faults_come_first_none_answers_normally(sim: CdfSimulator, client: httpx.Client) -> None:
    """script_list answers in order (None: normally) per list, then every request normally."""
    sim.add_run(1, 1, 1, "Completed")
    sim.script_list(1, [None, Step.throttle("1"), Step.raw(200, b"{not json")])
    sim.script_list(None, [Step.error(503)])
    token = _token(client, sim)
    codes = [_get(client, f"{RUNS}/1/runs", token).status_code for _ in range(4)]
    assert codes == [200, 429, 200, 200]
    assert [r.status_code for r in (_get(client, RUNS, token), _get(client, RUNS, token))] == [503, 200]
    assert (len(sim.list_requests(1)), len(sim.list_requests(None))) == (4, 2)


def test_sim_add_run_with_steps_scripts_the_run(sim: CdfSimulator, client: httpx.Client) -> None:
    """add_run(steps=...) lists the run and scripts its results; set_run and set_latest keep working."""
    sim.add_run(4, 44, 5, "Completed", steps=[Step.run(make_run(2, job_id=44))])
    sim.set_latest(4, [Step.status("Running", 44)])
    token = _token(client, sim)
    assert len(_get(client, f"{RUNS}/4/runs/44", token).json()["matches"]) == 2
    assert _get(client, f"{RUNS}/4/runs/latest", token).json()["jobId"] == 44
