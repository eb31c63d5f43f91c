"""Configuration (contract, section 3): defaults, and one clear line naming the variable when a setting is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from handlers.core.errors import ConfigError
from handlers.process.settings import Settings, load_settings
from tests.conftest import ROOT

SECRET = "idp-Secret-Value-93ab71"
TOKEN = "static-Token-Value-4c2e19"
PREFIXES = ("CDF_", "IDP_", "RELAY_", "POLL_", "RUN_", "HTTP_")
SINGLES = ("GOOGLE_CLOUD_PROJECT", "LOG_LEVEL")
URL = "https://westeurope-1.cognitedata.com"
TOPIC = "projects/matchrelay-test/topics/events"
BASE = {
    "CDF_PROJECT": "demo",
    "CDF_URL": URL,
    "IDP_TOKEN_URL": "https://login.example.com/tenant/oauth2/v2.0/token",
    "IDP_CLIENT_ID": "matchrelay",
    "IDP_CLIENT_SECRET": SECRET,
    "RELAY_TOPIC": TOPIC,
}


def _ours(name: str) -> bool:
    upper = name.upper()
    return upper.startswith(PREFIXES) or upper in SINGLES


def clean_environ() -> dict[str, str]:
    """The process environment without any variable of the contract."""
    return {k: v for k, v in os.environ.items() if not _ours(k)}


@pytest.fixture(autouse=True)
def _clear_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if _ours(name):
            monkeypatch.delenv(name)


def configure(monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None] | None = None) -> None:
    """Set ``BASE`` with ``changes`` applied (``None`` removes a variable)."""
    values: dict[str, str | None] = {**BASE, **(changes or {})}
    for name, value in values.items():
        if value is not None:
            monkeypatch.setenv(name, value)


def load(monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None] | None = None) -> Settings:
    """``load_settings`` under ``BASE`` with ``changes``."""
    configure(monkeypatch, changes)
    return load_settings()


NO_IDP: dict[str, str | None] = {"IDP_TOKEN_URL": None, "IDP_CLIENT_ID": None, "IDP_CLIENT_SECRET": None}

BAD_SETTINGS = [
    pytest.param({"CDF_PROJECT": None}, ("CDF_PROJECT",), id="cdf-project-missing"),
    pytest.param({"CDF_PROJECT": ""}, ("CDF_PROJECT",), id="cdf-project-empty"),
    pytest.param({"CDF_PROJECT": "../x"}, ("CDF_PROJECT",), id="cdf-project-path"),
    pytest.param({"CDF_URL": None}, ("CDF_URL", "CDF_CLUSTER"), id="neither-url-nor-cluster"),
    pytest.param(
        {"CDF_URL": "https://api.example.com", "CDF_CLUSTER": "westeurope-1"},
        ("CDF_URL", "CDF_CLUSTER"),
        id="url-contradicts-cluster",
    ),
    pytest.param({"CDF_URL": "westeurope-1.cognitedata.com"}, ("CDF_URL",), id="url-without-scheme"),
    pytest.param({"CDF_URL": None, "CDF_CLUSTER": "west/europe"}, ("CDF_CLUSTER",), id="cluster-path"),
    pytest.param({"CDF_TOKEN": TOKEN}, ("CDF_TOKEN", "IDP_"), id="token-and-idp"),
    pytest.param({"IDP_CLIENT_SECRET": None}, ("IDP_CLIENT_SECRET",), id="idp-secret-missing"),
    pytest.param({"IDP_CLIENT_ID": None}, ("IDP_CLIENT_ID",), id="idp-client-id-missing"),
    pytest.param({"IDP_TOKEN_URL": None}, ("IDP_TOKEN_URL",), id="idp-token-url-missing"),
    pytest.param(
        {"CDF_PROJECT": None, "CDF_ALLOWED_PROJECTS": "demo,other"},
        ("CDF_PROJECT",),
        id="allowed-projects-without-cdf-project",
    ),
    pytest.param(
        {"POLL_INITIAL_DELAY_S": "10", "POLL_MAX_DELAY_S": "5"},
        ("POLL_INITIAL_DELAY_S", "POLL_MAX_DELAY_S"),
        id="initial-delay-over-max",
    ),
    pytest.param({"POLL_BUDGET_S": "abc"}, ("POLL_BUDGET_S",), id="budget-not-a-number"),
    pytest.param({"HTTP_TIMEOUT_S": "30s"}, ("HTTP_TIMEOUT_S",), id="timeout-with-unit"),
    pytest.param({"POLL_MAX_DELAY_S": "-1"}, ("POLL_MAX_DELAY_S",), id="max-delay-negative"),
    pytest.param({"RUN_MAX_WAIT_S": "one day"}, ("RUN_MAX_WAIT_S",), id="max-wait-not-a-number"),
    pytest.param({"RELAY_TOPIC": "events"}, ("RELAY_TOPIC",), id="short-topic-without-gcp-project"),
    pytest.param({"RELAY_ERROR_TOPIC": "errors"}, ("RELAY_ERROR_TOPIC",), id="short-error-topic-without-gcp-project"),
    pytest.param({"RELAY_TOPIC": "projects/p/subscriptions/s"}, ("RELAY_TOPIC",), id="topic-not-a-topic"),
    pytest.param({"LOG_LEVEL": "LOUD"}, ("LOG_LEVEL",), id="bad-log-level"),
    pytest.param({"POLL_BUDGET_S": "540"}, ("POLL_BUDGET_S",), id="budget-not-below-default-timeout"),
    pytest.param({"POLL_BUDGET_S": "60", "INVOCATION_TIMEOUT_S": "60"}, ("POLL_BUDGET_S",), id="budget-equals-timeout"),
    pytest.param(
        {"POLL_BUDGET_S": "300", "CLOUD_RUN_TIMEOUT_SECONDS": "240"}, ("POLL_BUDGET_S",), id="budget-over-platform"
    ),
    pytest.param({"INVOCATION_TIMEOUT_S": "4"}, ("INVOCATION_TIMEOUT_S",), id="timeout-too-short"),
    pytest.param({"INVOCATION_TIMEOUT_S": "3601"}, ("INVOCATION_TIMEOUT_S",), id="timeout-too-long"),
    pytest.param({"INVOCATION_TIMEOUT_S": "9m"}, ("INVOCATION_TIMEOUT_S",), id="timeout-with-unit"),
    pytest.param({"CLOUD_RUN_TIMEOUT_SECONDS": "3"}, ("CLOUD_RUN_TIMEOUT_SECONDS",), id="platform-timeout-short"),
    pytest.param({"RELAY_TRIGGER_TOPIC": "trigger"}, ("RELAY_TRIGGER_TOPIC",), id="short-trigger-topic-no-project"),
    pytest.param(
        {"RELAY_TRIGGER_TOPIC": "projects/p/subscriptions/s"}, ("RELAY_TRIGGER_TOPIC",), id="trigger-not-a-topic"
    ),
]


@pytest.mark.parametrize(("changes", "variables"), BAD_SETTINGS)
def test_load_settings_bad_setting_names_variable(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None], variables: tuple[str, ...]
) -> None:
    """A missing or contradictory setting raises one ``ConfigError`` whose message starts with the variable."""
    configure(monkeypatch, changes)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(variables), message
    assert "\n" not in message
    assert SECRET not in message
    assert TOKEN not in message


# --- defaults -----------------------------------------------------------------------------------------------------


def test_load_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset variables take the defaults of section 3."""
    settings = load(monkeypatch)
    assert settings.cdf_api_version == "beta"
    assert settings.scopes == f"{URL}/.default"
    assert (settings.poll_initial_delay_s, settings.poll_max_delay_s, settings.budget_s) == (1, 30, 480)
    assert (settings.timeout_s, settings.relay_trigger_topic, settings.trigger_topic()) == (540, None, None)
    assert (settings.run_max_wait_s, settings.http_timeout_s) == (82800, 30)
    assert settings.log_level == "INFO"
    assert settings.allowed_projects == ("demo",)
    assert settings.base_url == URL
    assert settings.idp_audience is None
    assert settings.topic() == TOPIC
    assert settings.error_topic() == TOPIC


def test_load_settings_url_from_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CDF_CLUSTER`` alone gives ``CDF_URL=https://{cluster}.cognitedata.com`` and the default scope."""
    settings = load(monkeypatch, {"CDF_URL": None, "CDF_CLUSTER": "api"})
    assert settings.base_url == "https://api.cognitedata.com"
    assert settings.scopes == "https://api.cognitedata.com/.default"


def test_load_settings_url_agreeing_with_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CDF_URL`` and ``CDF_CLUSTER`` together are fine when they name the same URL."""
    assert load(monkeypatch, {"CDF_CLUSTER": "westeurope-1"}).base_url == URL


def test_load_settings_url_trailing_slash_in_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``CDF_URL`` with a trailing slash still gives the scope ``{CDF_URL}/.default`` without ``//``."""
    settings = load(monkeypatch, {"CDF_URL": URL + "/"})
    assert settings.scopes == f"{URL}/.default"


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [
        pytest.param("a", ["a"], id="one"),
        pytest.param("a b", ["a", "b"], id="spaces"),
        pytest.param("a,b", ["a", "b"], id="commas"),
        pytest.param(" a ,  b,c  d ", ["a", "b", "c", "d"], id="mixed"),
        pytest.param(f"{URL}/.default offline_access", [f"{URL}/.default", "offline_access"], id="urls"),
    ],
)
def test_load_settings_scopes_split_on_spaces_or_commas(
    monkeypatch: pytest.MonkeyPatch, scopes: str, expected: list[str]
) -> None:
    """``IDP_SCOPES`` is split on spaces or commas into the scopes requested."""
    assert load(monkeypatch, {"IDP_SCOPES": scopes}).scopes.split(" ") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [pytest.param("", "", id="empty-sends-no-header"), pytest.param("20230101-beta", "20230101-beta", id="set")],
)
def test_load_settings_api_version(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    """``CDF_API_VERSION`` is taken as given; empty means no ``cdf-version`` header."""
    assert load(monkeypatch, {"CDF_API_VERSION": value}).cdf_api_version == expected


def test_load_settings_allowed_projects_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CDF_ALLOWED_PROJECTS`` is a comma-separated list of projects."""
    settings = load(monkeypatch, {"CDF_ALLOWED_PROJECTS": "demo, other ,third"})
    assert settings.allowed_projects == ("demo", "other", "third")


def test_load_settings_values_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set variables override the defaults, numbers read as seconds."""
    settings = load(
        monkeypatch,
        {
            "POLL_INITIAL_DELAY_S": "0.5",
            "POLL_MAX_DELAY_S": "12",
            "POLL_BUDGET_S": "60",
            "RUN_MAX_WAIT_S": "3600",
            "HTTP_TIMEOUT_S": "5.5",
            "LOG_LEVEL": "DEBUG",
            "IDP_AUDIENCE": "https://cognitedata.com",
        },
    )
    assert (settings.poll_initial_delay_s, settings.poll_max_delay_s, settings.budget_s) == (0.5, 12, 60)
    assert (settings.run_max_wait_s, settings.http_timeout_s, settings.log_level) == (3600, 5.5, "DEBUG")
    assert settings.idp_audience == "https://cognitedata.com"


@pytest.mark.parametrize(
    ("changes", "events", "errors"),
    [
        pytest.param({"RELAY_ERROR_TOPIC": "projects/p-1/topics/errs"}, TOPIC, "projects/p-1/topics/errs", id="full"),
        pytest.param(
            {"RELAY_TOPIC": "events", "RELAY_ERROR_TOPIC": "errors", "GOOGLE_CLOUD_PROJECT": "my-gcp-project"},
            "projects/my-gcp-project/topics/events",
            "projects/my-gcp-project/topics/errors",
            id="short-names",
        ),
        pytest.param(
            {"RELAY_TOPIC": "events", "GOOGLE_CLOUD_PROJECT": "my-gcp-project"},
            "projects/my-gcp-project/topics/events",
            "projects/my-gcp-project/topics/events",
            id="error-topic-defaults-to-relay-topic",
        ),
    ],
)
def test_load_settings_topics(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None], events: str, errors: str
) -> None:
    """Topics are ``projects/P/topics/T`` or ``T`` with ``GOOGLE_CLOUD_PROJECT``; errors default to events."""
    settings = load(monkeypatch, changes)
    assert (settings.topic(), settings.error_topic()) == (events, errors)


@pytest.mark.parametrize(
    ("changes", "timeout_s", "budget_s"),
    [
        pytest.param({}, 540, 480, id="defaults"),
        pytest.param({"CLOUD_RUN_TIMEOUT_SECONDS": "900"}, 900, 480, id="platform-timeout"),
        pytest.param({"CLOUD_RUN_TIMEOUT_SECONDS": "0"}, 540, 480, id="platform-zero-is-unset"),
        pytest.param({"CLOUD_RUN_TIMEOUT_SECONDS": "300"}, 300, 240, id="short-platform-timeout-shrinks-budget"),
        pytest.param({"INVOCATION_TIMEOUT_S": "60", "CLOUD_RUN_TIMEOUT_SECONDS": "900"}, 60, 48, id="own-setting-wins"),
        pytest.param({"INVOCATION_TIMEOUT_S": "60", "POLL_BUDGET_S": "59"}, 60, 59, id="budget-given"),
    ],
)
def test_load_settings_timeout_and_budget(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None], timeout_s: float, budget_s: float
) -> None:
    """INVOCATION_TIMEOUT_S, else CLOUD_RUN_TIMEOUT_SECONDS, else 540; an unset budget always fits below it."""
    settings = load(monkeypatch, changes)
    assert (settings.timeout_s, settings.budget_s) == (timeout_s, pytest.approx(budget_s))


@pytest.mark.parametrize(
    ("changes", "source", "expected"),
    [
        pytest.param({}, "//pubsub.googleapis.com/projects/p-1/topics/trig", "projects/p-1/topics/trig", id="source"),
        pytest.param({}, "//pubsub.googleapis.com/", None, id="raw-push-has-none"),
        pytest.param({}, "//pubsub.googleapis.com/projects/p-1/topics/../x", None, id="source-not-a-topic"),
        pytest.param({}, None, None, id="none"),
        pytest.param(
            {"RELAY_TRIGGER_TOPIC": "projects/p-2/topics/mine"},
            "//pubsub.googleapis.com/projects/p-1/topics/trig",
            "projects/p-2/topics/mine",
            id="setting-wins",
        ),
    ],
)
def test_load_settings_trigger_topic(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None], source: str | None, expected: str | None
) -> None:
    """RELAY_TRIGGER_TOPIC, else the topic of the triggering event's source, else none."""
    assert load(monkeypatch, changes).trigger_topic(source) == expected


def test_load_settings_static_token_instead_of_idp(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CDF_TOKEN`` alone is a complete set of credentials."""
    settings = load(monkeypatch, {**NO_IDP, "CDF_TOKEN": TOKEN})
    assert settings.cdf_token is not None
    assert settings.cdf_token.get_secret_value() == TOKEN


@pytest.mark.parametrize(
    "changes",
    [pytest.param({}, id="idp-secret"), pytest.param({**NO_IDP, "CDF_TOKEN": TOKEN}, id="cdf-token")],
)
def test_settings_repr_hides_secrets(monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None]) -> None:
    """Neither ``repr`` nor ``str`` of the settings shows the client secret or the static token."""
    settings = load(monkeypatch, changes)
    for text in (repr(settings), str(settings), f"{settings}", settings.model_dump_json()):
        assert SECRET not in text
        assert TOKEN not in text


# --- through the real entry points --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "variable"),
    [
        pytest.param({"CDF_PROJECT": None}, "CDF_PROJECT", id="cdf-project-missing"),
        pytest.param({"IDP_CLIENT_SECRET": None}, "IDP_CLIENT_SECRET", id="idp-secret-missing"),
        pytest.param({"CDF_CLUSTER": "northeurope-1"}, "CDF_URL", id="url-contradicts-cluster"),
        pytest.param({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL", id="bad-log-level"),
        pytest.param({"RELAY_TOPIC": None}, "RELAY_TOPIC", id="relay-topic-missing"),
    ],
)
def test_main_startup_bad_setting_exits_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], changes: dict[str, str | None], variable: str
) -> None:
    """Loading the function with a bad setting exits with code 2 and one log line naming the variable."""
    from functions_framework import create_app

    configure(monkeypatch, changes)
    capfd.readouterr()
    with pytest.raises(SystemExit) as caught:
        create_app(target="on_run_message", source=str(ROOT / "main.py"), signature_type="cloudevent")
    out, err = capfd.readouterr()
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert caught.value.code == 2
    assert len(lines) == 1, lines
    assert variable in json.loads(lines[0])["message"]
    assert SECRET not in out + err


def run_cli(args: list[str], changes: dict[str, str | None]) -> subprocess.CompletedProcess[str]:
    """``python main.py ...`` in a fresh process with ``BASE`` plus ``changes`` as its configuration."""
    env = clean_environ()
    env.update({k: v for k, v in {**BASE, "CDF_URL": "http://127.0.0.1:9", **changes}.items() if v is not None})
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("args", "changes", "variable"),
    [
        pytest.param(["--stdout"], {"CDF_PROJECT": None}, "CDF_PROJECT", id="cdf-project-missing"),
        pytest.param(["--stdout"], {"CDF_URL": None}, "CDF_URL", id="cdf-url-missing"),
        pytest.param([], {"RELAY_TOPIC": None}, "RELAY_TOPIC", id="relay-topic-missing-without-stdout"),
    ],
)
def test_cli_bad_setting_exits_2_with_one_line(args: list[str], changes: dict[str, str | None], variable: str) -> None:
    """``python main.py run`` with a bad setting exits 2 with one line naming the variable, sending nothing."""
    result = run_cli(["run", "--pipeline-id", "1", "--run-id", "2", *args], changes)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2
    assert len(lines) == 1, lines
    assert variable in lines[0]
    assert SECRET not in result.stdout + result.stderr
    if args == ["--stdout"]:
        assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["run", "--pipeline-id", "1", "--stdout"], id="missing-run-id"),
        pytest.param(["run", "--run-id", "2", "--stdout"], id="missing-pipeline-id"),
        pytest.param([], id="no-command"),
        pytest.param(["replay", "--pipeline-id", "1", "--run-id", "2"], id="unknown-command"),
    ],
)
def test_cli_usage_error_exits_2(args: list[str]) -> None:
    """A usage error exits 2 and says what is wrong, before reading any configuration."""
    result = run_cli(args, {"CDF_PROJECT": None})
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert result.stdout == ""
    if args and args[0] == "run":
        assert ("--run-id" if "--run-id" not in args else "--pipeline-id") in result.stderr
