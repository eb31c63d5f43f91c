"""Security (contract, section 6): where requests go, what a message can put in a URL, where a secret could leak.

Against the function as deployed (functions-framework, the CDF simulator, the Pub/Sub emulator), the pure
trigger parser, and ``handlers.cdf.api`` over an ``httpx.MockTransport`` that records every request. Every test
of this file also checks that nothing it wrote to stdout or stderr holds a secret (``_no_secret_in_output``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import handlers.core.trigger
from handlers.cdf.api import CdfClient
from handlers.cdf.httpio import make_http
from handlers.cdf.tokens import TokenSource
from handlers.core.errors import ConfigError, InvalidRequest, InvalidTrigger, RelayError, TransientError
from handlers.core.trigger import Trigger, parse_event, parse_fields
from handlers.process.settings import Settings, load_settings
from sim import CdfSimulator, Request, Step, make_run
from tests.conftest import ROOT, SECRET, PubSub, Topics, deliver, load_app, pubsub_message

MAX_ID = 9007199254740991
ALLOWED = ("demo", "other")
TOKEN_PATH = "/oauth2/token"
RUN_PATH = re.compile(
    r"/api/v1/projects/(demo|other)/context/entitymatching/pipelines/[1-9][0-9]{0,15}/runs/([1-9][0-9]{0,15}|latest)"
)
WRONG_SECRET = "wrong-Client-Secret-55e0"
STATIC_TOKEN = "static-Bearer-Token-0b9d41"
FORGED = "forged-Token-from-a-message-7a1c"
SUBSCRIPTION = "projects/matchrelay-test/subscriptions/eventarc-sub"
PREFIXES = ("CDF_", "IDP_", "RELAY_", "POLL_", "RUN_", "HTTP_")

#: Every bearer token a simulator issued during this module, so no later output may contain it.
ISSUED: set[str] = set()


@pytest.fixture(autouse=True)
def _no_secret_in_output(capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """After each test of this file: what it wrote to stdout and stderr holds no secret and no issued token."""
    yield
    captured = capfd.readouterr()
    output = captured.out + captured.err
    for secret in (SECRET, WRONG_SECRET, STATIC_TOKEN, *ISSUED):
        assert secret not in output


@pytest.fixture
def issued(sim: CdfSimulator, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Record every token the simulator's token endpoint hands out (to this process or to a CLI child)."""
    answer_token = sim._answer_token

    def recording(request: Request) -> Step:
        step = answer_token(request)
        with contextlib.suppress(ValueError, AttributeError):
            token = json.loads(step.body).get("access_token")
            if isinstance(token, str):
                ISSUED.add(token)
        return step

    monkeypatch.setattr(sim, "_answer_token", recording)
    return ISSUED


def assert_only_configured_requests(sim: CdfSimulator) -> None:
    """Every request the simulator saw went to the token path or to a well-formed run path, with an issued token."""
    for request in sim.requests:
        if request.path == TOKEN_PATH:
            assert request.method == "POST"
            assert request.query == {}
            continue
        assert RUN_PATH.fullmatch(request.path), request.path
        assert request.method == "GET"
        assert request.query in ({}, {"includeSkipped": "false"}), request.query
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        assert scheme == "Bearer"
        assert token in ISSUED | sim.static_tokens
        assert FORGED not in json.dumps(request.headers)


# --- hostile triggers: nothing but validated parts reaches a URL ---------------------------------------------------

HOSTILE_INVALID: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("pipeline-dot-dot", {"pipelineId": "1/../../2", "runId": 1}, {}),
    ("run-query", {"pipelineId": 1, "runId": "1?x=y"}, {}),
    ("run-fragment", {"pipelineId": 1, "runId": "1#x"}, {}),
    ("latest-dot-dot", {"pipelineId": 1, "runId": "latest/../1"}, {}),
    ("latest-query", {"pipelineId": 1, "runId": "latest?includeSkipped=true"}, {}),
    ("latest-upper", {"pipelineId": 1, "runId": "LATEST"}, {}),
    ("percent-digit", {"pipelineId": "%31", "runId": 1}, {}),
    ("percent-slash", {"pipelineId": 1, "runId": "1%2F..%2F2"}, {}),
    ("fullwidth-digits", {"pipelineId": "１２３", "runId": 1}, {}),
    ("arabic-indic-digits", {"pipelineId": 1, "runId": "١٢٣"}, {}),
    ("superscript-one", {"pipelineId": "\u00b9", "runId": 1}, {}),
    ("space", {"pipelineId": " 1", "runId": 1}, {}),
    ("newline", {"pipelineId": 1, "runId": "1\n"}, {}),
    ("nul", {"pipelineId": 1, "runId": "1\x00"}, {}),
    ("sign", {"pipelineId": "+1", "runId": 1}, {}),
    ("hex", {"pipelineId": "0x1", "runId": 1}, {}),
    ("url-as-id", {"pipelineId": "http://127.0.0.2:1/", "runId": 1}, {}),
    ("project-dot-dot", {"pipelineId": 1, "runId": 2, "project": "../../x"}, {}),
    ("project-traversal", {"pipelineId": 1, "runId": 2, "project": "demo/../other"}, {}),
    ("project-percent", {"pipelineId": 1, "runId": 2, "project": "demo%2F..%2Fother"}, {}),
    ("project-query", {"pipelineId": 1, "runId": 2, "project": "demo?x=1"}, {}),
    ("project-fragment", {"pipelineId": 1, "runId": 2, "project": "demo#x"}, {}),
    ("project-userinfo", {"pipelineId": 1, "runId": 2, "project": "demo@127.0.0.2"}, {}),
    ("project-url", {"pipelineId": 1, "runId": 2, "project": "http://127.0.0.2:1"}, {}),
    ("project-authority", {"pipelineId": 1, "runId": 2, "project": "//127.0.0.2/x"}, {}),
    ("project-case", {"pipelineId": 1, "runId": 2, "project": "DEMO"}, {}),
    ("project-fullwidth", {"pipelineId": 1, "runId": 2, "project": "ｄｅｍｏ"}, {}),
    ("project-rtl", {"pipelineId": 1, "runId": 2, "project": "\u202edemo"}, {}),
    ("project-nul", {"pipelineId": 1, "runId": 2, "project": "demo\x00"}, {}),
    ("project-list", {"pipelineId": 1, "runId": 2, "project": "demo,other"}, {}),
    ("attributes-dot-dot", {}, {"pipelineId": "1/../2", "runId": "3"}),
    ("attributes-project", {}, {"pipelineId": "1", "runId": "2", "project": "../../x"}),
    ("attributes-url", {}, {"pipelineId": "1", "runId": "2", "project": "http://127.0.0.2:1"}),
]


def test_security_hostile_triggers_are_invalid_and_send_no_request(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """Ids and projects with path, query, URL or non-ASCII characters are invalid_trigger and CDF is never asked."""
    for name, body, attributes in HOSTILE_INVALID:
        message = pubsub_message(body or None, attributes=attributes)
        assert deliver(client, message).status_code == 200, name
        errors = pubsub.drain(topics.errors_sub, at_least=1)
        assert [e.attributes["ce-reason"] for e in errors] == ["invalid_trigger"], name
        assert errors[0].attributes["ce-id"] == f"invalid-trigger/{message['messageId']}", name
        source = re.escape(sim.url) + r"/api/v1/projects/(demo|other)/context/entitymatching/pipelines"
        assert re.fullmatch(source, errors[0].attributes["ce-source"]), name
        hostile = (body or attributes).get("project")
        if isinstance(hostile, str):  # the rejected text enters no attribute
            assert "ce-cdfproject" not in errors[0].attributes, name
            assert all(hostile not in value for value in errors[0].attributes.values()), name
    assert sim.requests == []
    assert pubsub.drain(topics.events_sub) == []


HOSTILE_EXTRAS = {
    "url": "{elsewhere}/api/v1/projects/demo/context/entitymatching/pipelines/1/runs/456",
    "cdfUrl": "{elsewhere}",
    "host": "127.0.0.2",
    "Host": "127.0.0.2",
    "Authorization": f"Bearer {FORGED}",
    "headers": {"Authorization": f"Bearer {FORGED}", "Host": "127.0.0.2", "cdf-version": "alpha"},
    "token": FORGED,
    "access_token": FORGED,
    "tokenUrl": "{elsewhere}/oauth2/token",
    "path": "../../../../x",
}


@pytest.mark.parametrize(
    "trigger",
    [
        pytest.param({"pipelineId": 1, "runId": 456}, id="ids"),
        pytest.param({"pipelineId": "1", "runId": "456", "project": "demo"}, id="decimal-strings"),
        pytest.param({"pipelineId": 1, "runId": "latest"}, id="latest"),
        pytest.param({"pipelineId": 1, "runId": 456, "project": "other"}, id="other-project"),
    ],
)
def test_security_message_fields_never_choose_host_header_or_token(
    client: Any, sim: CdfSimulator, issued: set[str], pubsub: PubSub, topics: Topics, trigger: dict[str, Any]
) -> None:
    """URLs, hosts, headers and tokens in a message's body or attributes are ignored: requests go where configured."""
    sim.set_run(1, 456, [Step.run(make_run(1))])
    sim.set_latest(1, [Step.status("Completed", 456)])
    with CdfSimulator() as elsewhere:
        extras = json.loads(json.dumps(HOSTILE_EXTRAS).replace("{elsewhere}", elsewhere.url))
        attributes = {k: v if isinstance(v, str) else json.dumps(v) for k, v in extras.items()}
        response = deliver(client, pubsub_message({**extras, **trigger}, attributes=attributes))
        assert response.status_code == 200
        assert elsewhere.requests == []
    other = trigger.get("project") == "other"  # the simulator serves one project: 403 for the other
    events = pubsub.drain(topics.events_sub, at_least=0 if other else 2)
    errors = pubsub.drain(topics.errors_sub, at_least=1 if other else 0)
    assert sim.cdf_requests()
    assert_only_configured_requests(sim)
    assert all(r.headers.get("cdf-version") == "beta" for r in sim.cdf_requests())
    if other:
        assert (events, [e.attributes["ce-reason"] for e in errors]) == ([], ["access_denied"])
    else:
        assert ([e.attributes["ce-subject"] for e in events], errors) == (["match/0", "run"], [])


hostile_text = st.text(alphabet=st.sampled_from("0123456789/.?#%@:\\ +-_aZ\x00\n１٣¹²"), max_size=12)
hostile_ids = st.one_of(
    st.integers(1, MAX_ID),
    st.integers(1, MAX_ID).map(str),
    st.just("latest"),
    st.integers(),
    hostile_text,
    st.builds(lambda a, b: f"{a}{b}", st.integers(1, 99), hostile_text),
    st.builds(lambda a, b: f"{a}{b}", hostile_text, st.integers(1, 99)),
)
hostile_projects = st.one_of(
    st.none(),
    st.sampled_from(ALLOWED),
    st.builds(lambda p, t: p + t, st.sampled_from(ALLOWED), hostile_text),
    st.builds(lambda t, p: t + p, hostile_text, st.sampled_from(ALLOWED)),
    hostile_text,
)


def unit_settings(**changes: Any) -> Settings:
    """Settings for unit tests, every value given (nothing read from the environment)."""
    values: dict[str, Any] = {
        "cdf_project": "demo",
        "cdf_cluster": None,
        "cdf_url": "http://127.0.0.1:9",
        "cdf_allowed_projects": "demo,other",
        "cdf_api_version": "beta",
        "idp_token_url": "http://127.0.0.1:10/oauth2/token",
        "idp_client_id": "matchrelay",
        "idp_client_secret": SECRET,
        "idp_scopes": None,
        "idp_audience": None,
        "cdf_token": None,
        "relay_topic": None,
        "relay_error_topic": None,
        "google_cloud_project": None,
        "http_timeout_s": 2.0,
        "log_level": "INFO",
    }
    return Settings(**{**values, **changes})


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(pipeline=hostile_ids, run=hostile_ids, project=hostile_projects)
def test_security_trigger_fields_enter_urls_only_as_validated_parts(pipeline: Any, run: Any, project: Any) -> None:
    """Whatever text a trigger holds, a URL is built only from an allowed project and integer ids (or latest)."""
    fields = {"pipelineId": pipeline, "runId": run, "project": project}
    try:
        trigger = parse_fields(fields, default_project="demo", allowed=ALLOWED)
    except InvalidTrigger:
        return
    config = unit_settings()
    with httpx.Client() as http:
        cdf = CdfClient(config, http, TokenSource(config, http))
        url = httpx.URL(cdf.run_url(trigger.project, trigger.pipeline_id, trigger.run_id))
    assert (url.scheme, url.host, url.port, url.query, url.fragment) == ("http", "127.0.0.1", 9, b"", "")
    assert RUN_PATH.fullmatch(url.path), url.path
    assert url.path.endswith(f"/pipelines/{trigger.pipeline_id}/runs/{trigger.run_id}")


class Recorder:
    """An ``httpx.MockTransport`` handler: a token endpoint and a CDF that record every request they get."""

    def __init__(self, cdf_answer: httpx.Response | None = None, token_answer: httpx.Response | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.cdf_answer, self.token_answer = cdf_answer, token_answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == TOKEN_PATH:
            return self.token_answer or httpx.Response(200, json={"access_token": "tok-abc", "expires_in": 3600})
        return self.cdf_answer or httpx.Response(200, json=make_run(1))


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(pipeline=st.integers(1, MAX_ID), run=st.integers(1, MAX_ID), project=st.sampled_from(ALLOWED))
def test_security_cdf_client_requests_only_configured_hosts(pipeline: int, run: int, project: str) -> None:
    """CdfClient sends the token request to IDP_TOKEN_URL and run requests to CDF_URL, nowhere else."""
    config = unit_settings()
    recorder = Recorder()
    http = make_http(config, httpx.MockTransport(recorder))
    cdf = CdfClient(config, http, TokenSource(config, http))
    with cdf.open_run(project, pipeline, run) as chunks:
        assert json.loads(b"".join(chunks))["status"] == "Completed"
    assert cdf.get_latest(project, pipeline)["jobId"] == 456
    token, *runs = recorder.requests
    assert (token.method, token.url.host, token.url.port, token.url.path) == ("POST", "127.0.0.1", 10, TOKEN_PATH)
    assert len(runs) == 2
    for request in runs:
        assert (request.method, request.url.scheme, request.url.host, request.url.port) == (
            "GET",
            "http",
            "127.0.0.1",
            9,
        )
        assert RUN_PATH.fullmatch(request.url.path)
        assert request.headers["authorization"] == "Bearer tok-abc"
        assert SECRET not in str(request.url) + json.dumps(dict(request.headers))
    assert [r.url.path.rsplit("/", 1)[-1] for r in runs] == [str(run), "latest"]
    assert runs[1].url.params == httpx.QueryParams({"includeSkipped": "false"})


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_security_cdf_client_does_not_follow_redirects(code: int) -> None:
    """A redirect from CDF or from the token endpoint is never followed to its Location."""
    config = unit_settings()
    elsewhere = {"Location": "http://127.0.0.2:1/x"}
    recorder = Recorder(cdf_answer=httpx.Response(code, headers=elsewhere))
    http = make_http(config, httpx.MockTransport(recorder))
    with (
        pytest.raises(InvalidRequest, match=f"HTTP {code}"),
        CdfClient(config, http, TokenSource(config, http)).open_run("demo", 1, 2),
    ):
        pass
    redirecting_idp = Recorder(token_answer=httpx.Response(code, headers=elsewhere))
    http = make_http(config, httpx.MockTransport(redirecting_idp))
    with pytest.raises(RelayError):
        TokenSource(config, http).get()
    assert {r.url.host for r in recorder.requests + redirecting_idp.requests} == {"127.0.0.1"}
    assert http.follow_redirects is False


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_security_cdf_redirect_is_not_followed_end_to_end(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, code: int
) -> None:
    """A 3xx from CDF sends no request to its Location and ends in run.failed invalid_request (as other 4xx), 200."""
    with CdfSimulator() as elsewhere:
        location = f"{elsewhere.url}/api/v1/projects/demo/context/entitymatching/pipelines/1/runs/456"
        sim.set_run(1, 456, [Step.raw(code, b"", headers={"Location": location})])
        response = deliver(client, pubsub_message({"pipelineId": 1, "runId": 456}))
        assert elsewhere.requests == []
    assert response.status_code == 200
    errors = pubsub.drain(topics.errors_sub, at_least=1)
    assert [e.attributes["ce-reason"] for e in errors] == ["invalid_request"]
    assert f"HTTP {code}" in errors[0].data["errorMessage"]


def test_security_token_endpoint_redirect_is_not_followed_end_to_end(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics
) -> None:
    """A token endpoint that keeps redirecting is not followed; it counts as an answer without a token."""
    with CdfSimulator() as elsewhere:
        sim.token_steps.extend([Step.raw(302, b"", headers={"Location": elsewhere.token_url})] * 4)
        sim.set_run(1, 456, [Step.run(make_run(1))])
        response = deliver(client, pubsub_message({"pipelineId": 1, "runId": 456}))
        assert elsewhere.requests == []
    assert response.status_code == 200
    errors = pubsub.drain(topics.errors_sub, at_least=1)
    assert [e.attributes["ce-reason"] for e in errors] == ["invalid_response"]
    assert sim.cdf_requests() == []


# --- secrets never leave through logs, events, answers or error messages ------------------------------------------


def _cli(env: dict[str, str], *args: str, **changes: str | None) -> subprocess.CompletedProcess[str]:
    """``python main.py run ...`` with the test deployment's environment, changed by ``changes`` (None unsets)."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PUBSUB_EMULATOR_HOST")}
    merged: dict[str, str | None] = {**base, **env, **changes}
    return subprocess.run(
        [sys.executable, "main.py", "run", *args],
        cwd=ROOT,
        env={k: v for k, v in merged.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def verbose_client(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The function at LOG_LEVEL=DEBUG (the most it ever says) with a 0.5 s poll budget."""
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("POLL_BUDGET_S", "0.5")
    return load_app().test_client()


def test_security_secrets_never_appear_in_logs_events_answers_or_errors(
    verbose_client: Any,
    env: dict[str, str],
    sim: CdfSimulator,
    issued: set[str],
    pubsub: PubSub,
    topics: Topics,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over success, 401 refresh, 403, 404, 400, token endpoint 400/401/503, bad bodies, bad triggers and the CLI."""
    messages: list[str] = []
    original_init = RelayError.__init__

    def recording_init(self: RelayError, *args: Any, **kwargs: Any) -> None:
        messages.append(" ".join(map(str, args)))
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(RelayError, "__init__", recording_init)
    idp_echo = json.dumps({"error": "invalid_client", "error_description": f"client_secret {SECRET} is wrong"})
    answers: list[bytes] = []

    def trigger(run_id: int, *, token_steps: list[Step] | None = None, expire: bool = False, **body: Any) -> None:
        if expire:
            sim.expire_tokens()
        sim.token_steps.extend(token_steps or [])
        response = deliver(verbose_client, pubsub_message({"pipelineId": 1, "runId": run_id, **body}))
        answers.append(response.data)
        assert response.status_code in (200, 503)

    sim.set_run(1, 100, [Step.status("Running", 100), Step.run(make_run(2, 1, 1, job_id=100))])
    sim.set_run(1, 101, [Step.error(401), Step.run(make_run(1, job_id=101))])  # a cached token expired: refresh
    sim.set_run(1, 102, [Step.error(401)])  # a 401 on a token fetched just now: access_denied
    sim.set_run(1, 103, [Step.error(403, "Resource not found. This may also be due to insufficient access rights.")])
    sim.set_run(1, 105, [Step.error(400, "Invalid filter")])
    for run_id in (106, 107, 108, 109, 110):
        sim.set_run(1, run_id, [Step.run(make_run(1, job_id=run_id))])
    sim.set_run(1, 111, [Step.raw(200, b'{"status": "Completed", "matches": [')])
    sim.set_run(1, 112, [Step.status("Running", 112)])  # handed back when the budget runs out
    trigger(100)
    trigger(101)
    trigger(102)
    trigger(103)
    trigger(104)  # not scripted: 404
    trigger(105)
    trigger(106, expire=True, token_steps=[Step.raw(400, idp_echo.encode())])
    trigger(107, expire=True, token_steps=[Step.raw(401, idp_echo.encode())])
    trigger(108, expire=True, token_steps=[Step.error(503)])  # transient, then a fresh token
    trigger(109, expire=True, token_steps=[Step.run({"token_type": "Bearer"})] * 4)  # no access_token
    trigger(110, project="other")  # the simulator serves one project: 403
    trigger(111)
    trigger(112)
    deliver(verbose_client, pubsub_message(raw=b"not json"))
    deliver(verbose_client, pubsub_message({"pipelineId": "abc", "runId": "x"}))
    published = pubsub.drain(topics.events_sub, at_least=9) + pubsub.drain(topics.errors_sub, at_least=11)
    assert len(published) == 20

    sim.set_run(3, 300, [Step.run(make_run(2, job_id=300))])
    sim.set_run(3, 301, [Step.error(403)])
    sim.static_tokens.add(STATIC_TOKEN)
    static = {"IDP_TOKEN_URL": None, "IDP_CLIENT_ID": None, "IDP_CLIENT_SECRET": None, "CDF_TOKEN": STATIC_TOKEN}
    runs = [
        _cli(env, "--pipeline-id", "3", "--run-id", "300", "--stdout", IDP_CLIENT_SECRET=WRONG_SECRET),
        _cli(env, "--pipeline-id", "3", "--run-id", "300", "--stdout", LOG_LEVEL="DEBUG"),
        _cli(env, "--pipeline-id", "3", "--run-id", "301", "--stdout", **static),
        _cli(env, "--pipeline-id", "3", "--run-id", "300", "--stdout", CDF_TOKEN=STATIC_TOKEN),  # contradiction
    ]
    assert [r.returncode for r in runs] == [1, 0, 1, 2], [r.stderr[-500:] for r in runs]
    assert '"ce-reason": "auth_failed"' in runs[0].stdout
    assert "configuration error: CDF_TOKEN" in runs[3].stderr

    reasons = sorted(e.attributes.get("ce-reason", "") for e in published if "ce-reason" in e.attributes)
    assert reasons == sorted(
        ["access_denied"] * 3
        + ["auth_failed"] * 2
        + ["invalid_request", "run_not_found"]
        + ["invalid_response"] * 2
        + ["invalid_trigger"] * 2
    )
    tokens = {r.headers["authorization"].split()[-1] for r in sim.cdf_requests()} | issued
    assert len(tokens - {STATIC_TOKEN}) >= 4  # refreshes happened: every token issued is checked
    captured = capfd.readouterr()
    everything = "\n".join(
        [
            captured.out,
            captured.err,
            *(r.stdout + r.stderr for r in runs),
            *(a.decode("utf-8", "replace") for a in answers),
            *(e.raw.decode() + json.dumps(e.attributes) for e in published),
            *messages,
        ]
    )
    assert any("handed back" in a.decode() for a in answers)
    assert len(messages) >= 12
    for secret in (SECRET, WRONG_SECRET, STATIC_TOKEN, *tokens):
        assert secret not in everything


def test_security_settings_mask_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Settings object's repr, str and dumps show IDP_CLIENT_SECRET and CDF_TOKEN only masked."""
    for config in (
        unit_settings(),
        unit_settings(idp_token_url=None, idp_client_id=None, idp_client_secret=None, cdf_token=STATIC_TOKEN),
    ):
        renderings = [
            repr(config),
            str(config),
            f"{config}",
            config.model_dump_json(),
            json.dumps(config.model_dump(), default=str),
            repr(config.model_dump()),
        ]
        for text in renderings:
            assert SECRET not in text
            assert STATIC_TOKEN not in text
        assert "**********" in config.model_dump_json()
    for name in list(os.environ):
        if name.startswith(PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CDF_PROJECT", "demo")
    monkeypatch.setenv("CDF_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("IDP_TOKEN_URL", "http://127.0.0.1:10/oauth2/token")
    monkeypatch.setenv("IDP_CLIENT_ID", "matchrelay")
    monkeypatch.setenv("IDP_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("CDF_TOKEN", STATIC_TOKEN)
    with pytest.raises(ConfigError) as contradiction:
        load_settings(publishing=False)
    monkeypatch.delenv("CDF_TOKEN")
    monkeypatch.setenv("POLL_BUDGET_S", SECRET)
    with pytest.raises(ConfigError) as invalid:
        load_settings(publishing=False)
    for error in (contradiction.value, invalid.value):
        assert SECRET not in str(error)
        assert STATIC_TOKEN not in str(error)
    assert str(contradiction.value).startswith("CDF_TOKEN")
    assert str(invalid.value).startswith("POLL_BUDGET_S")


# --- oversized triggers: rejected before anything reads them -----------------------------------------------------


def _body_of(size: int) -> bytes:
    """A valid trigger padded to exactly ``size`` bytes."""
    head, tail = b'{"pipelineId": 1, "runId": 2, "pad": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.fixture
def decode_spy(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Record the size of everything handlers.core.trigger hands to base64 and json decoding."""
    calls: list[tuple[str, int]] = []
    real_b64decode, real_loads = base64.b64decode, json.loads

    def b64decode(data: Any, *args: Any, **kwargs: Any) -> bytes:
        calls.append(("b64decode", len(data)))
        return real_b64decode(data, *args, **kwargs)

    def loads(data: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(("loads", len(data)))
        return real_loads(data, *args, **kwargs)

    monkeypatch.setattr(handlers.core.trigger, "base64", SimpleNamespace(b64decode=b64decode))
    monkeypatch.setattr(handlers.core.trigger, "json", SimpleNamespace(loads=loads, dumps=json.dumps))
    return calls


def _parse_raw(raw: bytes) -> Trigger:
    message = {"data": base64.b64encode(raw).decode(), "attributes": {}, "messageId": "1"}
    return parse_event("e", {"message": message, "subscription": SUBSCRIPTION}, default_project="demo", allowed=ALLOWED)


def test_security_oversized_trigger_is_rejected_before_decoding(decode_spy: list[tuple[str, int]]) -> None:
    """A 50 MB trigger body is invalid_trigger without being base64-decoded or parsed."""
    with pytest.raises(InvalidTrigger, match="too large"):
        _parse_raw(_body_of(50_000_000))
    assert decode_spy == []


@pytest.mark.parametrize(
    "size",
    [1_000_001, 1_000_002, 1_000_003, 1_500_000],
)
def test_security_trigger_over_1mb_is_invalid_without_parsing(size: int, decode_spy: list[tuple[str, int]]) -> None:
    """A body over 1 MB (1_000_000 bytes) is an invalid trigger, and JSON parsing never sees it."""
    with pytest.raises(InvalidTrigger):
        _parse_raw(_body_of(size))
    assert all(n <= 1_000_000 for what, n in decode_spy if what == "loads")


def test_security_trigger_of_exactly_1mb_is_read(decode_spy: list[tuple[str, int]]) -> None:
    """A body of exactly 1_000_000 bytes is still a trigger (the limit is "over 1 MB")."""
    trigger = _parse_raw(_body_of(1_000_000))
    assert (trigger.pipeline_id, trigger.run_id) == (1, 2)
    assert ("loads", 1_000_000) in decode_spy


def test_security_oversized_trigger_end_to_end(client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics) -> None:
    """A 12 MB trigger is answered 200 with one invalid_trigger event, and CDF is never asked."""
    response = deliver(client, pubsub_message(raw=_body_of(12_000_000)))
    assert response.status_code == 200
    errors = pubsub.drain(topics.errors_sub, at_least=1)
    assert [e.attributes["ce-reason"] for e in errors] == ["invalid_trigger"]
    assert len(errors[0].data["errorMessage"]) < 200
    assert sim.requests == []


# --- CDF's text: carried as data, never interpreted -----------------------------------------------------------------

HOSTILE_TEXT = '%s %(x)s {0} ${HOME} \x1b[31m <script>\n{"severity": "CRITICAL", "message": "forged"}\r\nX-Forged: 1'


def test_security_cdf_text_is_carried_verbatim_and_forges_no_log_line(
    client: Any, sim: CdfSimulator, pubsub: PubSub, topics: Topics, capfd: pytest.CaptureFixture[str]
) -> None:
    """errorMessage and errors from CDF reach run.failed unchanged, and cannot forge a log line."""
    failed = make_run(0, status="Failed", job_id=457, error_message=HOSTILE_TEXT, errors=[HOSTILE_TEXT, "{0}"])
    sim.set_run(1, 457, [Step.run(failed)])
    sim.set_run(1, 458, [Step.error(400, HOSTILE_TEXT)])
    for run_id in (457, 458):
        assert deliver(client, pubsub_message({"pipelineId": 1, "runId": run_id})).status_code == 200
    errors = {e.attributes["ce-runid"]: e.data for e in pubsub.drain(topics.errors_sub, at_least=2)}
    assert (errors["457"]["errorMessage"], errors["457"]["errors"]) == (HOSTILE_TEXT, [HOSTILE_TEXT, "{0}"])
    assert errors["458"]["reason"] == "invalid_request"
    assert HOSTILE_TEXT in errors["458"]["errorMessage"]
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert lines
    assert all(isinstance(line, dict) and line.get("message") != "forged" for line in lines)
    assert all(line["severity"] != "CRITICAL" for line in lines)
    assert sim.requests


def test_security_transient_errors_name_no_token(sim: CdfSimulator, issued: set[str]) -> None:
    """Errors raised for CDF's answers (here a refused and a retryable one) carry no token or secret."""
    config = unit_settings(cdf_url=sim.url, idp_token_url=sim.token_url)
    sim.set_run(1, 2, [Step.error(503, "busy"), Step.error(400, "bad")])
    raised: list[RelayError] = []
    with make_http(config) as http:
        cdf = CdfClient(config, http, TokenSource(config, http))
        for _ in range(2):
            try:
                with cdf.open_run("demo", 1, 2):
                    pass
            except (TransientError, InvalidRequest) as exc:
                raised.append(exc)
    assert [type(e) for e in raised] == [TransientError, InvalidRequest]
    assert issued
    for secret in (SECRET, *issued):
        assert all(secret not in str(e) for e in raised)
