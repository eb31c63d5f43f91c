"""Progress on a terminal (handlers/cli/display.py): the display itself, its hooks, and the CLI on a pty and a pipe.

The CLI tests run ``python main.py run --stdout`` against the CDF simulator (no
Pub/Sub needed): with stderr a pipe, JSON lines exactly as ever; with stderr a
pseudo-terminal, the display and readable warnings, and stdout unchanged.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from random import Random
from types import SimpleNamespace
from typing import Any, cast

import pytest
from rich.console import Console

from handlers.cli import display as progress
from handlers.cli.display import NO_PROGRESS, ProgressSink
from handlers.cli.terminal import TerminalProgress
from handlers.core.deadline import Deadline
from handlers.core.errors import PublishFailed
from handlers.core.events import Event
from handlers.core.models import RunSummary
from handlers.core.poll import Backoff, Clock, Deadlines, Poller
from handlers.flow.relay import Relay
from handlers.process.logs import JsonFormatter, setup_logging
from handlers.pubsub.publish import StdoutSink
from sim import CdfSimulator, Step, make_run
from tests.conftest import ROOT, SECRET

TITLE = "pipeline 1 run 456"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Recorder:
    """A ``Progress`` that writes down every call."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def waiting(self, status: str, polls: int, next_in_s: float) -> None:
        self.calls.append(("waiting", status, polls, next_in_s))

    def published(self, n: int) -> None:
        self.calls.append(("published", n))

    def confirmed(self, n: int) -> None:
        self.calls.append(("confirmed", n))

    def found(self, pipelines: int = 0, runs: int = 0) -> None:
        self.calls.append(("found", pipelines, runs))

    def done(self, outcome: str, polls: int | None = None, detail: str = "") -> None:
        self.calls.append(("done", outcome, polls, detail))


def recording() -> Console:
    return Console(record=True, force_terminal=True, width=100)


def shown(console: Console, clock: FakeClock, live: bool = False) -> TerminalProgress:
    return TerminalProgress(console, TITLE, live=live, clock=clock)


def live_line(display: TerminalProgress) -> str:
    """The live line as drawn now (spinner and all), as plain text."""
    console = recording()
    console.print(display)
    return console.export_text().strip()


def event(n: int) -> Event:
    return Event(b"{}", {"ce-id": f"e{n}"})


# -- the display, on a recording console


def test_waiting_says_each_status_once_and_counts_down_to_the_next_poll() -> None:
    console, clock = recording(), FakeClock()
    display = shown(console, clock)
    assert "asking CDF" in live_line(display)
    display.waiting("Queued", 1, 5.0)
    display.waiting("Queued", 2, 5.0)
    display.waiting("Running", 3, 4.0)
    clock.now += 1.5
    lines = console.export_text().splitlines()
    assert lines == [f"{TITLE}: Queued (poll 1)", f"{TITLE}: Running (poll 3)"]
    assert live_line(display).endswith(f"{TITLE} · Running · poll 3 · next poll in 2.5 s")
    clock.now += 3.0  # the next poll is due: being asked
    assert live_line(display).endswith(f"{TITLE} · Running · poll 3 · polling")


def test_publishing_shows_events_published_and_confirmed_with_rates() -> None:
    console, clock = recording(), FakeClock()
    display = shown(console, clock)
    display.waiting("Running", 1, 1.0)
    display.published(10)
    clock.now += 1.0
    display.published(10)
    clock.now += 1.0
    display.confirmed(20)
    line = live_line(display)
    assert line.endswith(f"{TITLE} · 20 published (10/s) · 20 confirmed (10/s)")
    assert "Running" not in line  # the status is the past once publishing begins
    display.done("completed", polls=2)
    assert console.export_text().splitlines()[-1] == (
        f"✓ completed {TITLE}: 20 published, 20 confirmed in 2.00 s (10/s), 2 polls"
    )


def test_a_sweep_shows_pipelines_and_runs_found() -> None:
    console, clock = recording(), FakeClock()
    display = TerminalProgress(console, "sweep", live=False, clock=clock)
    display.found(pipelines=1, runs=3)
    display.found(pipelines=1)
    display.published(3)
    clock.now += 0.5
    display.confirmed(3)
    assert live_line(display).endswith("sweep · 2 pipelines, 3 runs found · 3 published (6/s) · 3 confirmed (6/s)")
    display.done("completed")
    assert console.export_text().splitlines()[-1] == (
        "✓ completed sweep: 2 pipelines, 3 runs found, 3 published, 3 confirmed in 0.50 s (6/s)"
    )


@pytest.mark.parametrize(
    ("outcome", "mark"), [("completed", "✓"), ("failed", "✗"), ("handed_back", "!")], ids=lambda v: str(v)
)
def test_done_marks_the_outcome(outcome: str, mark: str) -> None:
    console = recording()
    shown(console, FakeClock()).done(outcome, polls=1, detail="why")
    assert console.export_text().strip() == f"{mark} {outcome} {TITLE}: 1 poll (why)"


def test_the_live_line_goes_and_what_lasts_stays() -> None:
    """Started and stopped as a context manager; the live line is transient, the plain lines remain."""
    console, clock = recording(), FakeClock()
    display = shown(console, clock, live=True)
    assert display.animated
    with display:
        display.waiting("Running", 1, 0.1)
        display.published(1)
        display.confirmed(1)
        display.done("completed", polls=2)
    text = console.export_text()
    assert f"{TITLE}: Running (poll 1)" in text
    assert f"✓ completed {TITLE}: 1 published, 1 confirmed in 0.00 s, 2 polls" in text


# -- log lines under a terminal


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_on_a_terminal_warnings_are_readable_and_info_is_left_to_the_display(root_logging: logging.Logger) -> None:
    console = recording()
    display = shown(console, FakeClock())
    setup_logging("INFO", to_stderr=True)
    display.take_logs("INFO")
    display.take_logs("INFO")  # after each setup_logging: still one handler
    assert not [h for h in root_logging.handlers if isinstance(h.formatter, JsonFormatter)]
    assert len([h for h in root_logging.handlers if h is display._handler]) == 1
    log = logging.getLogger("matchrelay")
    log.info("run is Running; polling again later")
    log.warning("CDF asked to retry (HTTP 503); retrying")
    log.critical("configuration error: CDF_URL is missing")
    text = console.export_text()
    assert "polling again later" not in text
    assert re.search(r"WARNING +CDF asked to retry \(HTTP 503\); retrying", text)
    assert re.search(r"CRITICAL +configuration error: CDF_URL is missing", text)
    assert "{" not in text


def test_log_level_debug_shows_everything_on_a_terminal(root_logging: logging.Logger) -> None:
    console = recording()
    display = shown(console, FakeClock())
    setup_logging("DEBUG", to_stderr=True)
    display.take_logs("DEBUG")
    logging.getLogger("matchrelay").info("run is Running; polling again later")
    assert "polling again later" in console.export_text()


def test_log_lines_bound_elsewhere_stay_json(root_logging: logging.Logger) -> None:
    display = TerminalProgress(recording(), TITLE, live=False, take_logs=False)
    setup_logging("INFO")
    before = list(root_logging.handlers)
    display.take_logs("INFO")
    assert root_logging.handlers == before


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("stderr", "stdout", "events_to_stdout", "expected"),
    [
        pytest.param(False, True, True, None, id="stderr-a-pipe"),
        pytest.param(False, False, False, None, id="both-pipes"),
        pytest.param(True, False, True, (True, True), id="stdout-events-piped"),
        pytest.param(True, True, True, (False, True), id="stdout-events-on-the-terminal-too"),
        pytest.param(True, True, False, (True, True), id="publishing-logs-on-the-terminal"),
        pytest.param(True, False, False, (True, False), id="publishing-logs-to-a-file"),
    ],
)
def test_on_terminal_chooses_by_the_streams(
    stderr: bool, stdout: bool, events_to_stdout: bool, expected: tuple[bool, bool] | None
) -> None:
    """``(animated, takes_logs)``, or no display at all when stderr is not a terminal."""
    chosen = progress.on_terminal(TITLE, events_to_stdout, Stream(stderr), Stream(stdout))
    if expected is None:
        assert chosen is NO_PROGRESS
    else:
        assert isinstance(chosen, TerminalProgress)
        assert (chosen.animated, chosen.takes_logs) == expected


# -- the hooks


def test_the_poller_reports_each_wait_before_sleeping() -> None:
    slept: list[float] = []
    recorder = Recorder()

    def sleep(seconds: float) -> bool:
        slept.append(seconds)
        return False

    poller = Poller(Backoff(2.0, 2.0), Clock(lambda: 0.0, sleep, Random(1)), progress=recorder)
    answers = iter([None, None, "done"])

    def step() -> str | None:
        poller.stats.last = RunSummary(status="Running")
        return next(answers)

    assert poller.until_done(step, Deadlines(budget=None, wait=100.0)) == "done"
    assert recorder.calls == [("waiting", "Running", 1, 2.0), ("waiting", "Running", 2, 2.0)]
    assert slept == [2.0, 2.0]


def test_the_sink_counts_events_as_pulled_and_confirms_when_the_inner_sink_returns() -> None:
    recorder, out = Recorder(), io.StringIO()
    sink = ProgressSink(StdoutSink(out), recorder)
    assert sink.publish("-", (event(n) for n in range(3))) == 3
    assert recorder.calls == [("published", 1)] * 3 + [("confirmed", 3)]
    assert len(out.getvalue().splitlines()) == 3


def test_a_failed_publish_confirms_nothing() -> None:
    class Failing:
        def publish(self, topic: str, events: Iterable[Event], deadline: Deadline | None = None) -> int:
            for _ in zip(range(2), events, strict=False):
                pass
            raise PublishFailed("no")

    recorder = Recorder()
    with pytest.raises(PublishFailed):
        ProgressSink(Failing(), recorder).publish("-", [event(n) for n in range(5)])
    assert recorder.calls == [("published", 1)] * 2


def test_no_progress_is_the_default_and_attach_leaves_it_alone() -> None:
    assert Relay.__dataclass_fields__["progress"].default is NO_PROGRESS
    assert Poller.__dataclass_fields__["progress"].default is NO_PROGRESS
    inner = StdoutSink(io.StringIO())
    relay = SimpleNamespace(progress=NO_PROGRESS, sink=inner)
    progress.attach(cast(Relay, relay), NO_PROGRESS)
    assert relay.sink is inner
    display = shown(recording(), FakeClock())
    progress.attach(cast(Relay, relay), display)
    assert relay.progress is display
    assert isinstance(relay.sink, ProgressSink)
    assert relay.sink.inner is inner


def test_the_functions_path_never_imports_rich() -> None:
    modules = "sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.'))"
    code = f"import sys, handlers.flow.runtime, handlers.cli.commands, handlers.cli.display; print({modules})"
    env = {**_base_env(), "CDF_URL": "http://127.0.0.1:9"}
    # httpx imports its own CLI (and with it rich) when rich is installed: block that edge to see ours alone.
    blocker = "import sys; sys.modules['httpx._main'] = None; "
    result = subprocess.run(
        [sys.executable, "-c", blocker + code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]", result.stderr


# -- the CLI, against the CDF simulator


def _base_env() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
    return {**keep, "LANG": "C.UTF-8", "TERM": "xterm-256color"}


def _env(sim: CdfSimulator) -> dict[str, str]:
    return {
        **_base_env(),
        "CDF_PROJECT": "demo",
        "CDF_URL": sim.url,
        "IDP_TOKEN_URL": sim.token_url,
        "IDP_CLIENT_ID": "matchrelay",
        "IDP_CLIENT_SECRET": SECRET,
        "POLL_INITIAL_DELAY_S": "0.01",
        "POLL_MAX_DELAY_S": "0.05",
        "HTTP_TIMEOUT_S": "2",
    }


ARGS = ["run", "--pipeline-id", "1", "--run-id", "456", "--stdout"]
SUBJECTS = ["match/0", "match/1", "suggestedrule/0", "run"]
_TOKEN = re.compile(r"\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b|\r|\n|[^\x1b\r\n]+")


@pytest.fixture
def sim() -> Iterator[CdfSimulator]:
    with CdfSimulator(project="demo", client_id="matchrelay", client_secret=SECRET) as simulator:
        yield simulator


def run_on_pty(args: list[str], env: dict[str, str]) -> tuple[int, str, Screen]:
    """``python main.py *args`` with stderr a pseudo-terminal (120 columns) and stdout a pipe.

    Returns the exit code, stdout, and what the terminal was sent (``Screen``).
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    chunks: list[bytes] = []

    def read() -> None:  # until the last writer is gone: EIO on Linux
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    try:
        process = subprocess.Popen(
            [sys.executable, "main.py", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
        )
    finally:
        os.close(slave)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        stdout, _ = process.communicate(timeout=60)
        reader.join(30)
        assert not reader.is_alive(), "the terminal was not closed"
    finally:
        os.close(master)
    return process.returncode, stdout.decode(), Screen(b"".join(chunks).decode())


@dataclass
class Screen:
    """What a terminal shows once ``raw`` is written to it (the few controls rich uses), and every piece of text
    it was sent on the way (live frames included, drawn over since)."""

    raw: str
    lines: list[str] = field(init=False)
    sent: list[str] = field(init=False)

    def __post_init__(self) -> None:
        lines, sent, row, col = [""], [], 0, 0
        for token in _TOKEN.finditer(self.raw):
            text, (params, final) = token.group(), token.groups()
            if final is not None:
                n = int(params) if params.isdigit() else None
                if final == "K":  # erase in line: all of it (2), or to its end
                    lines[row] = "" if n == 2 else lines[row][:col]
                elif final == "A":
                    row = max(0, row - (n or 1))
            elif text == "\r":
                col = 0
            elif text == "\n":
                row, col = row + 1, 0
                lines += [""] * (row + 1 - len(lines))
            elif not text.startswith("\x1b"):
                line = lines[row].ljust(col)
                lines[row] = line[:col] + text + line[col + len(text) :]
                col += len(text)
                sent.append(text)
        self.lines = [line.rstrip() for line in lines]
        while self.lines and not self.lines[-1]:
            self.lines.pop()
        self.sent = sent

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def json_lines(self) -> list[str]:
        """Any piece of text sent that is a JSON object (a log line of contract section 7)."""
        found = []
        for piece in self.sent + self.lines:
            try:
                if isinstance(json.loads(piece), dict):
                    found.append(piece)
            except ValueError:
                continue
        return found


def test_cli_on_a_pipe_logs_json_lines_as_ever(sim: CdfSimulator) -> None:
    sim.set_run(1, 456, [Step.status("Running"), Step.error(503), Step.run(make_run(2, 1))])
    result = subprocess.run(
        [sys.executable, "main.py", *ARGS], cwd=ROOT, env=_env(sim), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["attributes"]["ce-subject"] for line in result.stdout.splitlines()] == SUBJECTS
    logs = [json.loads(line) for line in result.stderr.splitlines()]
    assert logs
    assert all({"severity", "message", "time", "logger"} <= set(entry) for entry in logs)
    assert ("INFO", "run is Running; polling again later") in [(e["severity"], e["message"]) for e in logs]
    assert any(e["severity"] == "WARNING" and "retrying" in e["message"] for e in logs)
    assert logs[-1]["message"] == "completed: 4 events"


def test_cli_on_a_terminal_shows_status_polls_and_events(sim: CdfSimulator) -> None:
    """On a terminal: a line per status, a summary with the counts; the live line is gone; stdout unchanged."""
    sim.set_run(1, 456, [Step.status("Running"), Step.run(make_run(2, 1))])
    code, stdout, screen = run_on_pty(ARGS, _env(sim))
    assert code == 0, screen.raw
    assert [json.loads(line)["attributes"]["ce-subject"] for line in stdout.splitlines()] == SUBJECTS
    assert screen.lines[0] == f"{TITLE}: Running (poll 1)"
    assert re.fullmatch(
        rf"✓ completed {TITLE}: 4 published, 4 confirmed in \d+\.\d\d s( \([\d,]+/s\))?, 2 polls", screen.lines[1]
    )
    assert len(screen.lines) == 2, screen.text
    assert any(f"{TITLE} · Running · poll 1 · " in piece for piece in screen.sent)  # the live line, drawn over since
    assert screen.json_lines() == []


def test_cli_on_a_terminal_prints_warnings_readably(sim: CdfSimulator) -> None:
    sim.set_run(1, 456, [Step.error(503), Step.run(make_run(1))])
    code, stdout, screen = run_on_pty(ARGS, _env(sim))
    assert code == 0, screen.raw
    assert len(stdout.splitlines()) == 2
    assert re.match(r"\d\d:\d\d:\d\d WARNING +CDF asked to retry \(HTTP 503\)", screen.lines[0]), screen.text
    assert f"{TITLE}: unknown (poll 1)" in screen.lines
    assert screen.lines[-1].startswith(f"✓ completed {TITLE}: 2 published, 2 confirmed in ")
    assert screen.json_lines() == []


def test_cli_on_a_terminal_a_failed_run_ends_with_its_reason(sim: CdfSimulator) -> None:
    sim.set_run(1, 456, [Step.run(make_run(0, status="Failed", error_message="boom"))])
    code, stdout, screen = run_on_pty(ARGS, _env(sim))
    assert code == 1, screen.raw
    assert [json.loads(line)["attributes"]["ce-type"].rsplit(".", 2)[-2:] for line in stdout.splitlines()] == [
        ["run", "failed"]
    ]
    assert screen.lines[0].startswith(f"✗ failed {TITLE}: 1 published, 1 confirmed in ")
    assert screen.lines[0].endswith(", 1 poll")
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING +failed: 1 events \(boom\)", screen.lines[1]), screen.text
    assert screen.json_lines() == []


def test_cli_on_a_terminal_a_configuration_error_is_one_readable_line() -> None:
    env = {**_base_env(), "CDF_URL": "http://127.0.0.1:9"}  # no CDF_PROJECT
    code, stdout, screen = run_on_pty(ARGS, env)
    assert code == 2
    assert stdout == ""
    assert len(screen.lines) == 1, screen.text
    assert re.fullmatch(r"\d\d:\d\d:\d\d CRITICAL configuration error: CDF_PROJECT: .*", screen.lines[0])


def test_cli_sweep_on_a_terminal_shows_the_triggers_and_the_summary(sim: CdfSimulator) -> None:
    """``sweep --stdout`` on a terminal: the run triggers published and confirmed, then the sweep's summary."""
    window_from, window_to = 1_730_199_600_000, 1_730_203_200_000
    for job_id in (1, 2, 3):
        sim.add_run(9, job_id, window_from + job_id if job_id < 3 else window_to)
    args = ["sweep", "--pipeline-id", "9", "--from", str(window_from), "--to", str(window_to), "--stdout"]
    code, stdout, screen = run_on_pty(args, _env(sim))
    assert code == 0, screen.raw
    assert sorted(json.loads(line)["data"]["runId"] for line in stdout.splitlines()) == [1, 2]
    assert len(screen.lines) == 1, screen.text
    assert screen.lines[0].startswith("✓ swept pipeline 9: 1 pipelines, 2 runs found, 2 published, 2 confirmed in ")
    assert "read 1 pipelines, published 2 run triggers)" in screen.lines[0]
    assert screen.json_lines() == []
