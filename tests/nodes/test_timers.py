"""Timer inputs: kernel timers on a fixed grid, read by the node's own thread, queued like
messages (no thread of their own)."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable

import pytest

from pinflow.nodes import events
from pinflow.nodes.inbox import Inbox
from pinflow.nodes.timers import TickTimer
from pinflow.spec import InputSpec

PERIOD_S = 0.02


class _PollWaiter:
    """The smallest waiter that watches descriptors, as the node's links do."""

    def __init__(self) -> None:
        self._poller = select.poll()
        self._watched: dict[int, Callable[[], None]] = {}
        self._ready: list[int] = []

    def pump(self) -> None:
        for fd in self._ready or [fd for fd, _ in self._poller.poll(0)]:
            self._watched[fd]()
        self._ready = []

    def wait(self, timeout: float | None) -> None:
        ms = None if timeout is None else int(timeout * 1000)
        self._ready = [fd for fd, _ in self._poller.poll(ms)]

    def wake(self) -> None:
        pass

    def watch(self, fd: int, on_ready: Callable[[], None]) -> None:
        self._watched[fd] = on_ready
        self._poller.register(fd, select.POLLIN)

    def unwatch(self, fd: int) -> None:
        self._watched.pop(fd, None)
        self._poller.unregister(fd)


def _tick_event(timer: TickTimer, k: int, name: str) -> events.Event:
    return events.make_event(events.INPUT, name, seq=k, sent_ns=timer.wall_ns(k))


@pytest.fixture
def timer():
    made = TickTimer("tick", PERIOD_S)
    yield made
    made.close()


def _wait_readable(timer: TickTimer, timeout_s: float = 2.0) -> None:
    poller = select.poll()
    poller.register(timer.fileno(), select.POLLIN)
    assert poller.poll(int(timeout_s * 1000)), "the timer never became readable"


def test_ticks_sit_on_the_grid_and_a_stall_is_counted_not_lost(timer: TickTimer):
    assert timer.take() == (1, 0), "nothing is due before the first period"
    _wait_readable(timer)
    timer.fire()
    first, count = timer.take()
    assert (first, count) == (1, 1)
    time.sleep(6 * PERIOD_S)  # the node is busy: the kernel keeps counting
    timer.fire()
    due_by_clock = (time.time_ns() - timer.wall_ns(0)) // timer.period_ns
    first, count = timer.take()
    last = first + count - 1
    assert first == 2 and count >= 5, (first, count)
    assert due_by_clock - 1 <= last <= due_by_clock, "every tick the clock says came due"
    assert timer.wall_ns(last) - timer.wall_ns(1) == (last - 1) * timer.period_ns, (
        "tick k is scheduled at start + k * period")
    assert timer.take() == (first + count, 0), "each tick is handed out once"


def test_reading_a_timer_that_is_not_due_neither_blocks_nor_counts(timer: TickTimer):
    started = time.monotonic()
    timer.fire()
    assert time.monotonic() - started < PERIOD_S / 2, "fire() must never wait"
    assert timer.take() == (1, 0)


def test_a_timer_is_a_descriptor_not_a_thread():
    threads = threading.active_count()
    made = TickTimer("tick", PERIOD_S)
    fd = made.fileno()
    try:
        assert threading.active_count() == threads
        assert os.get_blocking(fd) is False
    finally:
        made.close()
    assert made.fileno() == -1
    with pytest.raises(OSError):
        os.fstat(fd)
    made.fire()  # a closed timer reads nothing and raises nothing
    assert made.take()[1] == 0


@pytest.mark.parametrize(("policy", "size", "kept"), [
    ("drop_oldest", 2, "newest"), ("drop_newest", 2, "oldest"), ("backpressure", 3, "newest")])
def test_ticks_that_came_due_while_busy_are_queued_by_the_input_s_policy(
        timer: TickTimer, policy: str, size: int, kept: str):
    inbox = Inbox([InputSpec("tick", "pinflow/timer/millis/20", queue_size=size,
                             queue_policy=policy)])
    waiter = _PollWaiter()
    inbox.feed(waiter.pump, waiter)
    inbox.add_timer(timer, lambda k, name: _tick_event(timer, k, name))
    event = inbox.next(timeout=2.0)
    assert event is not None and event["seq"] >= 1
    while (more := inbox.next(timeout=0)) is not None:  # whatever came due meanwhile
        event = more
    before = inbox.snapshot()["tick"]
    next_seq = before.received + 1  # ticks are numbered from 1, each counted as received
    time.sleep(8 * PERIOD_S)  # busy: several ticks come due, more than the queue holds
    event = inbox.next(timeout=2.0)
    assert event is not None
    queue = inbox.snapshot()["tick"]
    due = queue.received - before.received
    assert due >= 7, queue
    assert queue.dropped - before.dropped == due - min(due, size), (
        "what the queue could not hold is counted")
    rest = [event] + [inbox.next(timeout=0) for _ in range(queue.queued)]
    seqs = [e["seq"] for e in rest]
    kept_count = min(due, size)
    expected = (list(range(next_seq, next_seq + kept_count)) if kept == "oldest"
                else list(range(next_seq + due - kept_count, next_seq + due)))
    assert seqs == expected
    assert all(e["sent_ns"] == timer.wall_ns(e["seq"]) for e in rest)
    assert inbox.remove_timers() == [timer]


def test_a_run_of_arrivals_counts_as_if_each_was_pushed():
    """``push_run`` skips making what the policy drops; its counters must not notice."""
    for policy in ("drop_oldest", "drop_newest", "backpressure"):
        for queued in range(4):
            for count in (0, 1, 2, 3, 4, 9):
                one_by_one = events.InputQueue("a", 3, policy)
                at_once = events.InputQueue("a", 3, policy)
                for queue in (one_by_one, at_once):
                    for i in range(queued):
                        queue.push((i, None, "a"))  # type: ignore[arg-type]
                for i in range(count):
                    one_by_one.push((100 + i, None, "a"))  # type: ignore[arg-type]
                at_once.push_run(count, lambda i: (100 + i, None, "a"))
                where = (policy, queued, count)
                assert list(at_once.items) == list(one_by_one.items), where
                assert (at_once.received, at_once.dropped) == (
                    one_by_one.received, one_by_one.dropped), where


def test_a_c_library_without_timerfd_is_named_when_a_timer_starts(monkeypatch):
    """Importing pinflow binds nothing; a timer input where the C library has no timerfd
    (not Linux) fails when it starts, saying what it needs."""
    from pinflow.nodes import timers

    monkeypatch.setattr(timers.ctypes, "CDLL", lambda *_args, **_kwargs: object())
    with pytest.raises(OSError, match="timer inputs need Linux's timerfd"):
        timers._libc.__wrapped__()
