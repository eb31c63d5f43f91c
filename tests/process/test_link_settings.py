"""The link's settings (contract, section 3): defaults, and one clear line naming the variable when one is wrong."""

from __future__ import annotations

import json
import os

import pytest

from handlers.core.errors import ConfigError
from handlers.process.settings import load_settings
from tests.conftest import ROOT
from tests.process.test_settings import BASE, SECRET, TOPIC, configure, load

LINK = "LINK_"


@pytest.fixture(autouse=True)
def _clear_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(("CDF_", "IDP_", "RELAY_", "POLL_", "RUN_", "HTTP_", LINK)) or name in (
            "GOOGLE_CLOUD_PROJECT",
            "LOG_LEVEL",
        ):
            monkeypatch.delenv(name)


def test_link_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, the link takes 0.9, no overwrite, 4 writes in flight, every pipeline, real writes, RELAY_TOPIC."""
    settings = load(monkeypatch)
    assert (settings.link_min_score, settings.link_overwrite, settings.link_concurrency) == (0.9, False, 4)
    assert (settings.link_pipeline_ids, settings.link_dry_run, settings.linked_topic()) == (frozenset(), False, TOPIC)


def test_link_settings_values_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each LINK_ variable is read as given; LINK_PIPELINES is a comma-separated list of ids."""
    settings = load(
        monkeypatch,
        {
            "LINK_MIN_SCORE": "0.85",
            "LINK_OVERWRITE": "true",
            "LINK_CONCURRENCY": "16",
            "LINK_PIPELINES": " 7, 9007199254740991,,12 ",
            "LINK_DRY_RUN": "1",
            "LINK_TOPIC": "projects/other-project/topics/linked",
        },
    )
    assert (settings.link_min_score, settings.link_overwrite, settings.link_concurrency) == (0.85, True, 16)
    assert settings.link_pipeline_ids == {7, 12, 9007199254740991}
    assert (settings.link_dry_run, settings.linked_topic()) == (True, "projects/other-project/topics/linked")


@pytest.mark.parametrize(("value", "expected"), [("0", 0.0), ("1", 1.0), ("1.0", 1.0)])
def test_link_settings_min_score_bounds_included(monkeypatch: pytest.MonkeyPatch, value: str, expected: float) -> None:
    """LINK_MIN_SCORE may be 0 or 1 themselves."""
    assert load(monkeypatch, {"LINK_MIN_SCORE": value}).link_min_score == expected


def test_link_settings_short_topic_with_gcp_project(monkeypatch: pytest.MonkeyPatch) -> None:
    """A short LINK_TOPIC is named under GOOGLE_CLOUD_PROJECT, as the other topics are."""
    settings = load(monkeypatch, {"LINK_TOPIC": "linked", "GOOGLE_CLOUD_PROJECT": "matchrelay-test"})
    assert settings.linked_topic() == "projects/matchrelay-test/topics/linked"


BAD = [
    pytest.param({"LINK_MIN_SCORE": "1.01"}, "LINK_MIN_SCORE", id="min-score-over-one"),
    pytest.param({"LINK_MIN_SCORE": "-0.1"}, "LINK_MIN_SCORE", id="min-score-negative"),
    pytest.param({"LINK_MIN_SCORE": "nan"}, "LINK_MIN_SCORE", id="min-score-nan"),
    pytest.param({"LINK_MIN_SCORE": "90%"}, "LINK_MIN_SCORE", id="min-score-percent"),
    pytest.param({"LINK_OVERWRITE": "maybe"}, "LINK_OVERWRITE", id="overwrite-not-a-boolean"),
    pytest.param({"LINK_DRY_RUN": "dry"}, "LINK_DRY_RUN", id="dry-run-not-a-boolean"),
    pytest.param({"LINK_CONCURRENCY": "0"}, "LINK_CONCURRENCY", id="concurrency-zero"),
    pytest.param({"LINK_CONCURRENCY": "17"}, "LINK_CONCURRENCY", id="concurrency-over-16"),
    pytest.param({"LINK_CONCURRENCY": "2.5"}, "LINK_CONCURRENCY", id="concurrency-fraction"),
    pytest.param({"LINK_PIPELINES": "7,x"}, "LINK_PIPELINES", id="pipelines-not-ids"),
    pytest.param({"LINK_PIPELINES": "0"}, "LINK_PIPELINES", id="pipelines-zero"),
    pytest.param({"LINK_PIPELINES": "9007199254740992"}, "LINK_PIPELINES", id="pipelines-too-large"),
    pytest.param({"LINK_PIPELINES": "-3"}, "LINK_PIPELINES", id="pipelines-negative"),
    pytest.param({"LINK_TOPIC": "linked"}, "LINK_TOPIC", id="short-topic-without-gcp-project"),
    pytest.param({"LINK_TOPIC": "projects/p/subscriptions/s"}, "LINK_TOPIC", id="topic-not-a-topic"),
]


@pytest.mark.parametrize(("changes", "variable"), BAD)
def test_link_settings_bad_value_names_variable(
    monkeypatch: pytest.MonkeyPatch, changes: dict[str, str | None], variable: str
) -> None:
    """A wrong LINK_ setting raises one ConfigError whose one line starts with the variable."""
    configure(monkeypatch, changes)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(variable), message
    assert "\n" not in message
    assert SECRET not in message


@pytest.mark.parametrize(("changes", "variable"), BAD[::3])
def test_link_settings_startup_exits_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    changes: dict[str, str | None],
    variable: str,
) -> None:
    """Loading the link function with a wrong LINK_ setting exits 2 with one log line naming the variable."""
    from functions_framework import create_app

    configure(monkeypatch, changes)
    capfd.readouterr()
    with pytest.raises(SystemExit) as caught:
        create_app(target="on_run_completed", source=str(ROOT / "main.py"), signature_type="cloudevent")
    out, err = capfd.readouterr()
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert caught.value.code == 2
    assert len(lines) == 1, lines
    assert json.loads(lines[0])["message"].startswith(f"configuration error: {variable}")
    assert BASE["IDP_CLIENT_SECRET"] not in out + err
