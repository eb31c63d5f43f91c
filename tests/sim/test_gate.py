"""The simulator's limit on concurrent writes (sim/gate.py): admitted, refused, held and let go."""

from __future__ import annotations

import threading

from sim.gate import WriteGate


def test_a_gate_admits_up_to_its_limit_and_counts_the_peak() -> None:
    """Writes past the limit are refused while that many are in flight; one leaving makes room; reset restarts the
    peak from what is in flight."""
    gate = WriteGate(threading.Event())
    assert [gate.admit(2) for _ in range(3)] == [True, True, False]
    gate.leave()
    assert gate.admit(2)
    assert (gate.in_flight, gate.peak) == (2, 2)
    gate.leave()
    gate.reset()
    assert (gate.in_flight, gate.peak) == (1, 1)
    assert gate.admit(None)  # no limit


def test_a_held_write_waits_for_release() -> None:
    """A write held by a closed gate stays in flight until the gate opens, and wait_in_flight sees it there."""
    gate = WriteGate(threading.Event())
    gate.hold()
    done = threading.Event()

    def write() -> None:
        gate.admit(None)
        gate.wait_held(0.0)
        gate.leave()
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    assert gate.wait_in_flight(1, 10.0)
    assert not done.is_set()
    gate.release()
    thread.join(10.0)
    assert (done.is_set(), gate.in_flight) == (True, 0)


def test_a_stopping_server_ends_a_held_write() -> None:
    """A held write ends when the server stops, the gate still closed."""
    stopping = threading.Event()
    gate = WriteGate(stopping)
    gate.hold()
    stopping.set()
    gate.wait_held(5.0)  # returns at once: the stop ends both its latency and the gate's wait
    assert not gate.open
