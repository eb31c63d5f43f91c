"""Time accounting for one invocation: margin, producing, closing waits and request timeouts."""

from __future__ import annotations

import math

import pytest

from handlers.core.deadline import MIN_REQUEST_S, Deadline, margin_for


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("timeout_s", "margin"),
    [(5, 2.0), (20, 2.0), (30, 3.0), (540, 54.0), (600, 60.0), (3600, 60.0)],
)
def test_margin_is_a_tenth_of_the_timeout_within_2_and_60_s(timeout_s: float, margin: float) -> None:
    """The margin is 10 % of the timeout, never below 2 s nor above 60 s."""
    assert margin_for(timeout_s) == pytest.approx(margin)


@pytest.mark.parametrize(
    ("now", "producing", "ending"),
    [
        (100.0, True, 526.5),  # just received: all but a quarter of the margin for a closing wait
        (585.9, True, 40.6),
        (586.0, False, 40.5),  # exactly the margin left: stop producing
        (626.5, False, 0.0),
        (700.0, False, 0.0),  # past the end: nothing is waited for
    ],
)
def test_deadline_phases_follow_the_time_left(now: float, producing: bool, ending: float) -> None:
    """A request received at 100 s with a 540 s timeout produces until 54 s are left and ends 13.5 s early."""
    clock = Clock(100.0)
    deadline = Deadline.after(540, 100.0, clock)
    clock.now = now
    assert deadline.left() == pytest.approx(640.0 - now)
    assert deadline.producing() is producing
    assert deadline.ending_s(math.inf) == pytest.approx(ending)


def test_closing_waits_never_exceed_their_cap() -> None:
    """``ending_s`` gives at most the cap a caller asks for."""
    deadline = Deadline.after(540, 0.0, Clock())
    assert deadline.ending_s(90.0) == 90.0


@pytest.mark.parametrize(
    ("now", "request_s", "read_s"),
    [
        (0.0, 30.0, 27.0),  # reads stall at most half the margin
        (500.0, 13.0, 13.0),  # 40 s left: the request may not outlast the first half of the margin
        (513.0, MIN_REQUEST_S, MIN_REQUEST_S),  # 27 s left: never 0, which httpx reads as "no timeout"
    ],
)
def test_requests_are_capped_by_the_time_left(now: float, request_s: float, read_s: float) -> None:
    """A CDF request's timeout and a read's stall are capped so that neither outlives the invocation."""
    clock = Clock()
    deadline = Deadline.after(540, 0.0, clock)  # margin 54 s
    clock.now = now
    assert deadline.request_s(30.0) == pytest.approx(request_s)
    assert min(deadline.request_s(30.0), deadline.read_s(30.0)) == pytest.approx(read_s)


def test_no_deadline_always_produces_and_caps_nothing() -> None:
    """``Deadline.never`` (the CLI, or a run with no trigger topic) never stops producing and keeps every timeout."""
    deadline = Deadline.never(Clock(1e9))
    assert (deadline.bounded, deadline.producing()) == (False, True)
    assert (deadline.ending_s(90.0), deadline.request_s(30.0), deadline.read_s(30.0)) == (90.0, 30.0, 30.0)


def test_deadline_cutoff_is_the_end_less_the_margin() -> None:
    """No work may start past ``cutoff``: the end less the margin; without a deadline there is none."""
    assert Deadline.after(540, 100.0, Clock()).cutoff == 100.0 + 540 - 54
    assert Deadline.after(10, 0.0, Clock()).cutoff == 10 - 2
    assert Deadline.never(Clock()).cutoff is None
