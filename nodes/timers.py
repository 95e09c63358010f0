"""Timer inputs (``pinflow/timer/UNIT/N`` or dora's ``dora/timer/UNIT/N``), ticking in the
node."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class GridTimer:
    """Ticks on a fixed grid (start + k * period) so lateness never accumulates as drift;
    ticks missed while the process was descheduled are skipped, not bunched.

    ``tick(wall_ns, k)`` is called from the timer's own thread with the scheduled tick time
    (ns since the epoch) and its index on the grid.
    """

    def __init__(self, name: str, period_s: float, tick: Callable[[int, int], None],
                 stop: threading.Event) -> None:
        self._period_ns = int(period_s * 1e9)
        self._tick, self._stop = tick, stop
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"pinflow-timer-{name}")
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic_ns()
        wall_offset = time.time_ns() - start
        k = 1
        while not self._stop.wait(max(0.0, (start + k * self._period_ns - time.monotonic_ns())
                                      / 1e9)):
            scheduled = start + k * self._period_ns
            self._tick(scheduled + wall_offset, k)
            k = max(k + 1, (time.monotonic_ns() - start) // self._period_ns + 1)
