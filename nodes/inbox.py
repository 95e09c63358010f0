"""A node's incoming side: bounded per-input queues, STOP, and the order of delivery.

The thread that calls ``next()`` pumps the node's links (``feed``: messages are read and
queued on that thread, no hand-off) and sleeps in the links' ``wait`` until something comes;
timers are descriptors that wait watches (``add_timer``), so their ticks are queued on that
thread too; zenoh callbacks (STOP, closed inputs) push from their own threads and wake it.
Events leave in arrival order across inputs; STOP overtakes everything (queued messages are
dropped, releasing their slots) and is the last event: nothing arriving after it is
delivered; INPUT_CLOSED comes after the messages its input still had queued. Once every
input is closed and its INPUT_CLOSED delivered, a STOP with id ``ALL_INPUTS_CLOSED`` ends
the stream (dora's sequence), so cleanup under ``elif event["type"] == "STOP"`` runs either
way.
"""

from __future__ import annotations

import collections
import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from pinflow.nodes import events
from pinflow.nodes.events import Event, InputQueue, Pending
from pinflow.nodes.timers import TickTimer
from pinflow.protocol.stats import QueueStats
from pinflow.spec import InputSpec

LATENCY_SAMPLES = 1 << 16
"""Latency samples kept between two looks of the statistics (about one a second): the
oldest go first beyond that."""


class Waiter(Protocol):
    """Where the reading thread sleeps between events (the node's links)."""

    def wait(self, timeout: float | None) -> None:
        """Return when woken, when something may have arrived, or after ``timeout``."""

    def wake(self) -> None:
        """Make ``wait`` return (any thread; never blocks)."""

    def watch(self, fd: int, on_ready: Callable[[], None]) -> None:
        """Return from ``wait`` when ``fd`` is readable too; the pump calls ``on_ready()``."""

    def unwatch(self, fd: int) -> None:
        """Stop watching ``fd``."""


TickBuilder = Callable[[int, str], Event]
"""``build(k, input name)``: the event of a timer's tick ``k``."""


class _EventWaiter:
    """The waiter of an inbox fed only by other threads' pushes."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wait(self, timeout: float | None) -> None:
        self._event.wait(timeout)
        self._event.clear()

    def wake(self) -> None:
        self._event.set()

    def watch(self, fd: int, on_ready: Callable[[], None]) -> None:
        raise NotImplementedError("an inbox fed only by pushes has no descriptors to wait on")

    def unwatch(self, fd: int) -> None:
        pass


class Inbox:
    """Thread-safe; ``cond`` is also the lock for the node state that ``Node`` waits on."""

    def __init__(self, inputs: Iterable[InputSpec]) -> None:
        self._lock = threading.RLock()
        self.cond = threading.Condition(self._lock)
        """Also guards the node state ``Node`` waits on; the hot paths take ``_lock``."""
        self._arrivals = itertools.count()
        self._queues = {i.name: InputQueue(i.name, i.queue_size, i.queue_policy)
                        for i in inputs}
        self._sources = {i.name: i.source for i in inputs}
        self._stop_reason: str | None = None
        self._stop_delivered = False
        self._delivered: collections.deque[tuple[str, int, int]] = collections.deque(
            maxlen=LATENCY_SAMPLES)
        """(input, sent_ns, delivered_ns) per message taken, for the statistics: appended
        without a lock (one atomic append on the node's path), drained by the stats."""
        self._waiting_s = 0.0
        self._pump: Callable[[], None] = lambda: None
        self._waiter: Waiter = _EventWaiter()
        self._reader = threading.Lock()
        """One thread takes at a time (``next`` called from several threads queues them)."""
        self._sleeping = False
        self._timers: list[tuple[TickTimer, TickBuilder]] = []

    def feed(self, pump: Callable[[], None], waiter: Waiter) -> None:
        """``pump()`` reads what arrived into the queues (on the thread that takes);
        ``waiter`` is where that thread sleeps meanwhile."""
        self._pump, self._waiter = pump, waiter

    def add_timer(self, timer: TickTimer, build: TickBuilder) -> None:
        """Deliver ``timer``'s ticks on its input (``timer.name``); ``build(k, name)`` makes
        tick ``k``'s event when it is delivered. The waiter wakes for the timer."""
        self._timers.append((timer, build))
        self._waiter.watch(timer.fileno(), timer.fire)

    def remove_timers(self) -> list[TickTimer]:
        """Stop waiting on the timers (before they are closed); returns them."""
        timers, self._timers = [timer for timer, _ in self._timers], []
        for timer in timers:
            self._waiter.unwatch(timer.fileno())
        return timers

    def _read_inputs(self) -> None:
        """Queue what the links brought and the ticks that came due (the reading thread)."""
        self._pump()
        if self._timers:
            self._queue_ticks()

    def _queue_ticks(self) -> None:
        for timer, build in self._timers:
            first, count = timer.take()
            if not count:
                continue
            with self._lock:
                if self._stop_reason is not None:
                    return  # the stream is ending
                self._queues[timer.name].push_run(
                    count, functools.partial(self._tick, build, first, timer.name))

    def _tick(self, build: TickBuilder, first: int, name: str, i: int) -> Pending:
        """The queued form of tick ``first + i`` (caller holds the lock)."""
        return next(self._arrivals), functools.partial(build, first + i), name

    # -- producers of events (any thread) ---------------------------------------------------
    def push(self, names: Iterable[str], build: Callable[[str], Event]) -> None:
        """Queue one message for each input in ``names``; ``build(name)`` makes its event
        when delivered (decoding is deferred so dropped messages cost nothing)."""
        with self._lock:
            if self._stop_reason is not None:
                return  # the stream is ending: dropping the message releases its slot
            for name in names:
                self._queues[name].push((next(self._arrivals), build, name))
            if self._sleeping:
                self._waiter.wake()

    def count_dropped(self, names: Iterable[str], count: int) -> None:
        """``count`` messages for ``names`` were dropped before they reached this node (its
        producer's link backlog was full): counted as received and dropped."""
        with self.cond:
            for name in names:
                self._queues[name].received += count
                self._queues[name].dropped += count

    def close(self, names: Iterable[str]) -> None:
        with self.cond:
            for name in names:
                self._queues[name].close()
            self.cond.notify_all()
            if self._sleeping:
                self._waiter.wake()

    def stop(self, reason: str) -> None:
        with self.cond:
            if self._stop_reason is None:
                self._stop_reason = reason
            self.cond.notify_all()
            if self._sleeping:
                self._waiter.wake()

    @property
    def stopping(self) -> bool:
        return self._stop_reason is not None

    # -- the node's thread ------------------------------------------------------------------
    def next(self, timeout: float | None = None) -> Event | None:
        """The next event; a message is built (decoded, copied to a device) after the lock
        is released, so network callbacks never wait for that work."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._reader.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return None
        lock = self._lock
        try:
            while True:
                self._read_inputs()
                with lock:
                    taken = self._take()
                    if taken is not None or self._ended():
                        break
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return None
                    self._sleeping = True
                waited = time.monotonic()
                try:
                    self._waiter.wait(left)
                finally:
                    with lock:
                        self._sleeping = False
                        self._waiting_s += time.monotonic() - waited
        finally:
            self._reader.release()
        if type(taken) is not tuple:
            return taken  # type: ignore[return-value]
        _, build, name = taken
        event = build(name)
        sent_ns = dict.get(event, "sent_ns")  # not Event.get: no need to build the value
        if sent_ns:
            self._delivered.append((name, sent_ns, time.time_ns()))
        return event

    @property
    def ended(self) -> bool:
        with self.cond:
            return self._ended()

    def _ended(self) -> bool:
        return self._stop_delivered

    def _all_closed(self) -> bool:
        """Every input closed and said so: the stream ends with STOP ALL_INPUTS_CLOSED (a
        node without inputs, or with a timer, which never closes, waits for a real STOP)."""
        return bool(self._queues) and all(q.close_delivered for q in self._queues.values())

    def _take(self) -> Event | Pending | None:
        """Pop the oldest deliverable event (caller holds the lock); STOP goes first and
        ends the stream. A message comes back unbuilt (``(arrival, build, input name)``)."""
        if self._stop_delivered:
            return None
        if self._stop_reason is not None and not self._stop_delivered:
            self._stop_delivered = True
            for queue in self._queues.values():
                queue.drain()
            return events.make_event(events.STOP, self._stop_reason)
        best: InputQueue | None = None
        for queue in self._queues.values():
            if queue.items and (best is None or best.items[0][0] > queue.items[0][0]):
                best = queue
        if best is not None:
            return best.pop()
        for queue in self._queues.values():
            if queue.close_queued:
                queue.close_queued = False
                queue.close_delivered = True
                return events.make_event(events.INPUT_CLOSED, queue.name)
        if self._all_closed():
            self._stop_reason = self._stop_reason or events.ALL_INPUTS_CLOSED
            self._stop_delivered = True
            return events.make_event(events.STOP, events.ALL_INPUTS_CLOSED)
        return None

    # -- a look without taking (dora's is_empty, recv_async's wake-up) -----------------------
    def has_event(self) -> bool:
        """``next(0)`` would return an event now (a message, an INPUT_CLOSED or a STOP);
        takes nothing (what the links brought is queued first, unless another thread is
        reading them right now)."""
        if self._reader.acquire(blocking=False):
            try:
                self._read_inputs()
            finally:
                self._reader.release()
        return self._has_event()

    def _has_event(self) -> bool:
        with self.cond:
            if self._stop_delivered:
                return False
            if self._stop_reason is not None:
                return True
            return any(q.items or q.close_queued for q in self._queues.values()) or (
                self._all_closed())

    def wait_for_event(self, timeout: float | None, given_up: threading.Event) -> None:
        """Block until an event is waiting, the stream ended, ``given_up`` is set (then call
        :meth:`wake`) or ``timeout`` passed; reads the links meanwhile, takes nothing."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._reader.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return
        try:
            while True:
                self._read_inputs()
                with self._lock:
                    if given_up.is_set() or self._stop_delivered or self._has_event():
                        return
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return
                    self._sleeping = True
                try:
                    self._waiter.wait(left)
                finally:
                    with self._lock:
                        self._sleeping = False
        finally:
            self._reader.release()

    def wake(self) -> None:
        """Make a thread sleeping in ``next`` or ``wait_for_event`` look again."""
        with self._lock:
            self.cond.notify_all()
            if self._sleeping:
                self._waiter.wake()

    # -- statistics -------------------------------------------------------------------------
    def take_latencies(self) -> dict[str, list[float]]:
        """Sender-to-delivery latencies (ms) per input since the last call."""
        taken: dict[str, list[float]] = {}
        delivered = self._delivered
        for _ in range(len(delivered)):  # what comes in meanwhile is for the next call
            name, sent_ns, delivered_ns = delivered.popleft()
            latencies = taken.get(name)
            if latencies is None:
                latencies = taken[name] = []
            latencies.append((delivered_ns - sent_ns) / 1e6)
        return taken

    def take_waiting(self) -> float:
        """Seconds ``next()`` spent blocked with nothing to deliver since the last call."""
        with self.cond:
            taken, self._waiting_s = self._waiting_s, 0.0
        return taken

    def occupancy(self) -> dict[str, float]:
        """How full each input queue was since the last call (0..1): the mean over its
        quarters of a second, each at its fullest. Kept by the queues as they change, on
        the node's thread, so nothing has to wake to sample them."""
        with self._lock:
            return {name: queue.take_occupancy() for name, queue in self._queues.items()}

    def snapshot(self) -> dict[str, QueueStats]:
        with self.cond:
            return {
                q.name: QueueStats(source=self._sources[q.name], queued=len(q.items),
                                   size=q.size, received=q.received, dropped=q.dropped,
                                   delivered=q.delivered, closed=q.closed)
                for q in self._queues.values()
            }
