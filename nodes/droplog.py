"""Warnings for messages an input queue dropped, rate-limited per input.

Overflow is counted in ``node.stats()`` and the stats report; this makes it visible in the
run's output too (dora logs every drop). The first drop of an input is reported at the next
look (the stats thread looks once a second), then at most one line a second per input
with the count since the last line; :meth:`DropLog.flush` reports the rest when the node
closes, so the counts in the lines add up to the input's ``dropped`` counter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from pinflow.protocol.stats import QueueStats

EVERY_S = 1.0


class DropLog:
    """Turns the queues' drop counters into warning lines (``say(text)``)."""

    def __init__(self, say: Callable[[str], None], policies: Mapping[str, str],
                 every_s: float = EVERY_S) -> None:
        self._say, self._policies, self._every_s = say, dict(policies), every_s
        self._lock = threading.Lock()
        self._reported: dict[str, int] = {}
        self._since: dict[str, float] = {}
        self._last_line: dict[str, float] = {}

    def observe(self, queues: Mapping[str, QueueStats], *, final: bool = False) -> None:
        """Look at the counters; say what is due (everything when ``final``)."""
        now = time.monotonic()
        lines = []
        with self._lock:
            for name, queue in queues.items():
                new = queue.dropped - self._reported.get(name, 0)
                if new <= 0:
                    continue
                last = self._last_line.get(name)
                if not final and last is not None and now - last < self._every_s:
                    continue
                since = self._since.get(name, now)
                self._reported[name] = queue.dropped
                self._last_line[name] = self._since[name] = now
                span = f" in {now - since:.1f} s" if last is not None else ""
                lines.append(f"input '{name}' dropped {new} message(s){span}: queue full "
                             f"(queue_size {queue.size}, {self._policies.get(name, '?')}); "
                             f"{queue.dropped} dropped in all")
        for line in lines:  # outside the lock: saying may block on a full pipe
            self._say(line)

    def flush(self, queues: Mapping[str, QueueStats]) -> None:
        self.observe(queues, final=True)
