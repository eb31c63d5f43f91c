"""The review page (``examples/review``) in a real browser, end to end: the demo's run relayed, linked, its
``link.review`` events on the page, a person's clicks, and what comes of them in the pipeline's lists and CDF's links.

Every part is a real process: the relay, the link and the review function under
functions-framework, the page under Flask's server, Debian's Chromium driven by
Selenium through its ChromeDriver, the Pub/Sub emulator between them (the link
fed by a push subscription on the events topic, the review function by an
ordered push subscription on the decisions topic), the CDF simulator serving the
demo's world. ``REVIEW_PAGE_SCREENSHOT=path`` also saves the page's picture
there (how the one in docs/linking.md is made).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from handlers.core.provenance import ASSET_KEY, RUN_KEY, SCORE_KEY
from sim import CdfSimulator
from sim.emulator import free_port
from sim.scenarios import demo
from tests.conftest import GCP_PROJECT, ROOT, PubSub, Topics, binary_event, pubsub_message, wait_for
from tests.e2e.test_link import function, process_env, push_to
from tests.e2e.test_unlink import pipeline

PAGE = ROOT / "examples" / "review"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
BROWSER_FLAGS = (  # headless as root, and no calls home: this machine has no network beyond 127.0.0.1
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
TOKEN = "review-page-test-token"
WAIT_S = 120


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Chromium from Debian's packages, through its own ChromeDriver (Selenium downloads nothing)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: the review page's test needs Debian's chromium and chromium-driver, "
            "which ./dev test installs when run as root (apt-get install chromium chromium-driver)"
        )
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_window_size(1100, 900)
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def page_process(env: dict[str, str], log: Path) -> Iterator[str]:
    """``python main.py`` in examples/review, as it deploys on its own; its URL."""
    port = free_port()
    served = {**env, "PORT": str(port), "HOST": "127.0.0.1"}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "main.py"], cwd=PAGE, env=served, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: process.poll() is not None or answers(url), 60)
        assert process.poll() is None, f"the review page did not start:\n{log.read_text()[-3000:]}"
        yield url
    finally:
        process.kill()
        process.wait(30)


def answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}healthz", timeout=2).status_code == 200
    return False


def until(driver: WebDriver, what: Callable[[WebDriver], Any]) -> Any:
    """``what`` once it holds; the page reloads itself as events arrive, so an element may go stale meanwhile."""
    return WebDriverWait(driver, WAIT_S, 0.2, ignored_exceptions=(StaleElementReferenceException,)).until(what)


def cards(driver: WebDriver) -> dict[str, Any]:
    """The sources on the page, by their key ``{project}/{pipelineId}/{sourceId}``."""
    return {c.get_attribute("data-source"): c for c in driver.find_elements(By.CSS_SELECTOR, "section.source")}


def outcome(driver: WebDriver, key: str) -> str:
    """What the Decided list says of ``key``'s decision once review.applied came ('' until then)."""
    for item in driver.find_elements(By.CSS_SELECTOR, f'.decided li[data-source="{key}"] .outcome'):
        return str(item.text)
    return ""


def click(driver: WebDriver, key: str, verdict: str) -> None:
    """The ``verdict`` button of the source's best candidate."""
    cards(driver)[key].find_element(By.CSS_SELECTOR, f"tr.candidate button.{verdict}").click()


def subscribe(pubsub: PubSub, topic: str, **push: Any) -> str:
    name = pubsub.subscriber.subscription_path(GCP_PROJECT, f"sub-{uuid.uuid4().hex[:12]}")
    pubsub.subscriber.create_subscription(request={"name": name, "topic": topic, "ack_deadline_seconds": 60, **push})
    return name


def test_review_page_a_person_decides_what_the_link_left(
    env: dict[str, str], sim: CdfSimulator, pubsub: PubSub, topics: Topics, tmp_path: Path, browser: WebDriver
) -> None:
    """The demo's run leaves three sources below the threshold: the page shows them with their candidates; a confirm
    and a reject, one click each, leave the page, land in the pipeline's lists and CDF's links, and the page shows
    what review.applied said; the third source waits."""
    demo(sim)
    reviews = pubsub.publisher.create_topic(name=pubsub.publisher.topic_path(GCP_PROJECT, f"rv-{uuid.uuid4().hex}"))
    decisions = pubsub.publisher.create_topic(name=pubsub.publisher.topic_path(GCP_PROJECT, f"dc-{uuid.uuid4().hex}"))
    served = process_env(env, REVIEW_TOPIC=reviews.name, LINK_PIPELINES="1", LOG_LEVEL="INFO")
    page_env = {**os.environ, "PUBSUB_EMULATOR_HOST": env["PUBSUB_EMULATOR_HOST"], "GOOGLE_CLOUD_PROJECT": GCP_PROJECT}
    page_env |= {"REVIEW_SUBSCRIPTION": subscribe(pubsub, reviews.name), "DECISIONS_TOPIC": decisions.name}
    page_env |= {"REVIEW_DB": str(tmp_path / "review.sqlite3"), "CDF_URL": sim.url, "CDF_PROJECT": "demo"}
    page_env["CDF_TOKEN"] = TOKEN  # the page's own identity, to read names
    sim.static_tokens.add(TOKEN)
    with (
        function("on_run_message", served, tmp_path / "relay.log") as (_, relay_url),
        function("on_run_completed", served, tmp_path / "link.log") as (_, link_url),
        function("on_review_decision", served, tmp_path / "review.log") as (_, review_url),
        page_process(page_env, tmp_path / "page.log") as page_url,
    ):
        push_to(pubsub, topics.events, link_url)
        subscribe(pubsub, decisions.name, push_config={"push_endpoint": review_url}, enable_message_ordering=True)
        headers, body = binary_event(pubsub_message({"pipelineId": 1, "runId": 456}))
        assert httpx.post(relay_url, headers=headers, content=body, timeout=120).status_code == 200

        browser.get(page_url)
        until(browser, lambda d: len(cards(d)) == 3)
        shown = {key: card.text for key, card in cards(browser).items()}
        assert all("below the link's threshold" in text for text in shown.values())
        assert all("Pump " in text and "Asset 200000" in text for text in shown.values()), shown  # names, from CDF
        assert all("Confirm" in text and "Reject" in text for text in shown.values())
        first, second, third = sorted(shown)
        targets = {
            key: int(cards(browser)[key].find_element(By.CSS_SELECTOR, "tr.candidate").get_attribute("data-target"))
            for key in (first, second)
        }

        click(browser, first, "confirm")
        until(browser, lambda d: first not in cards(d) and "linked 1" in outcome(d, first))
        picture = tmp_path / "review-page.png"  # two sources waiting, one decided and applied
        assert browser.save_screenshot(str(picture))
        if os.environ.get("REVIEW_PAGE_SCREENSHOT"):
            shutil.copyfile(picture, os.environ["REVIEW_PAGE_SCREENSHOT"])
        click(browser, second, "reject")
        until(browser, lambda d: second not in cards(d) and "rejected 1" in outcome(d, second))
        assert list(cards(browser)) == [third]

    source_of = {key: int(key.rsplit("/", 1)[1]) for key in (first, second)}
    lists = pipeline(sim, 1)
    assert lists["confirmedMatches"] == [{"sourceId": source_of[first], "targetId": targets[first]}]
    assert lists["rejectedMatches"] == [{"sourceId": source_of[second], "targetId": targets[second]}]
    confirmed = sim.item_state("timeseries", source_of[first])
    assert confirmed is not None
    assert (confirmed.asset_id, confirmed.metadata[RUN_KEY], confirmed.metadata[SCORE_KEY]) == (
        targets[first],
        "demo/1/review",
        "null",
    )
    assert confirmed.metadata[ASSET_KEY] == str(targets[first])
    rejected = sim.item_state("timeseries", source_of[second])
    assert rejected is not None
    assert (rejected.asset_id, RUN_KEY in rejected.metadata) == (None, False)
