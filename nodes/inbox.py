"""A node's incoming side: bounded per-input queues, STOP, and the order of delivery.

Network callbacks and timers push; the node's thread takes. Events leave in arrival order
across inputs; STOP overtakes everything (queued messages are dropped, releasing their
slots) and is the last event: nothing arriving after it is delivered; INPUT_CLOSED comes
after the messages its input still had queued. Once every input is closed and its
INPUT_CLOSED delivered, a STOP with id ``ALL_INPUTS_CLOSED`` ends the stream (dora's
sequence), so cleanup under ``elif event["type"] == "STOP"`` runs either way.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable

from pinflow.nodes import events
from pinflow.nodes.events import Event, InputQueue, Pending
from pinflow.protocol.stats import QueueStats
from pinflow.spec import InputSpec


class Inbox:
    """Thread-safe; ``cond`` is also the lock for the node state that wakes ``next()``."""

    def __init__(self, inputs: Iterable[InputSpec]) -> None:
        self.cond = threading.Condition()
        self._arrivals = itertools.count()
        self._queues = {i.name: InputQueue(i.name, i.queue_size, i.queue_policy)
                        for i in inputs}
        self._sources = {i.name: i.source for i in inputs}
        self._stop_reason: str | None = None
        self._stop_delivered = False
        self._latencies: dict[str, list[float]] = {}
        self._waiting_s = 0.0

    # -- producers of events (any thread) ---------------------------------------------------
    def push(self, names: Iterable[str], build: Callable[[str], Event]) -> None:
        """Queue one message for each input in ``names``; ``build(name)`` makes its event
        when delivered (decoding is deferred so dropped messages cost nothing)."""
        with self.cond:
            if self._stop_reason is not None:
                return  # the stream is ending: dropping the message releases its slot
            for name in names:
                self._queues[name].push(Pending(next(self._arrivals),
                                                lambda name=name: build(name)))
            self.cond.notify_all()

    def close(self, names: Iterable[str]) -> None:
        with self.cond:
            for name in names:
                self._queues[name].close()
            self.cond.notify_all()

    def stop(self, reason: str) -> None:
        with self.cond:
            if self._stop_reason is None:
                self._stop_reason = reason
            self.cond.notify_all()

    @property
    def stopping(self) -> bool:
        return self._stop_reason is not None

    # -- the node's thread ------------------------------------------------------------------
    def next(self, timeout: float | None = None) -> Event | None:
        """The next event; a message is built (decoded, copied to a device) after the lock
        is released, so network callbacks never wait for that work."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while True:
                taken = self._take()
                if taken is not None or self._ended():
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                waited = time.monotonic()
                self.cond.wait(left)
                self._waiting_s += time.monotonic() - waited
        if not isinstance(taken, tuple):
            return taken
        name, pending = taken
        event = pending.build()
        if event.get("sent_ns"):
            latency_ms = (time.time_ns() - event["sent_ns"]) / 1e6
            with self.cond:
                self._latencies.setdefault(name, []).append(latency_ms)
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

    def _take(self) -> Event | tuple[str, Pending] | None:
        """Pop the oldest deliverable event (caller holds the lock); STOP goes first and
        ends the stream. A message comes back unbuilt, with its input's name."""
        if self._stop_delivered:
            return None
        if self._stop_reason is not None and not self._stop_delivered:
            self._stop_delivered = True
            for queue in self._queues.values():
                queue.drain()
            return events.make_event(events.STOP, self._stop_reason)
        best: InputQueue | None = None
        for queue in self._queues.values():
            if queue.items and (best is None or best.items[0].arrival > queue.items[0].arrival):
                best = queue
        if best is not None:
            best.delivered += 1
            return best.name, best.items.popleft()
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
        takes nothing."""
        with self.cond:
            if self._stop_delivered:
                return False
            if self._stop_reason is not None:
                return True
            return any(q.items or q.close_queued for q in self._queues.values()) or (
                self._all_closed())

    # -- statistics -------------------------------------------------------------------------
    def take_latencies(self) -> dict[str, list[float]]:
        """Sender-to-delivery latencies (ms) per input since the last call."""
        with self.cond:
            taken, self._latencies = self._latencies, {}
        return taken

    def take_waiting(self) -> float:
        """Seconds ``next()`` spent blocked with nothing to deliver since the last call."""
        with self.cond:
            taken, self._waiting_s = self._waiting_s, 0.0
        return taken

    def snapshot(self) -> dict[str, QueueStats]:
        with self.cond:
            return {
                q.name: QueueStats(source=self._sources[q.name], queued=len(q.items),
                                   size=q.size, received=q.received, dropped=q.dropped,
                                   delivered=q.delivered, closed=q.closed)
                for q in self._queues.values()
            }
