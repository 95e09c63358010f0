"""The launcher's copy of its nodes' statistics: the latest report of each node, decoded
strictly, and what the bottleneck diagnosis makes of the fresh ones.

A report that does not decode (any peer of the run can publish on its stats keys) is logged
and dropped here, on zenoh's thread; the diagnosis only ever sees well-formed reports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import zenoh

from pinflow.errors import DescriptorError
from pinflow.protocol.keys import RunKeys
from pinflow.protocol.stats import STATS_REPORT, StatsReport
from pinflow.runtime.diagnosis import Diagnoser
from pinflow.transport.malformed import Malformed

log = logging.getLogger("pinflow.launcher")

FRESH_S = 3.0
"""Reports older than this are from nodes that exited or hang: the diagnosis skips them."""


class StatsCollector:
    """Keeps the latest report per node of one run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reports: dict[str, tuple[float, StatsReport]] = {}
        self._diagnoser = Diagnoser()
        self.malformed = Malformed("launcher", log)
        self._subscriber: zenoh.Subscriber | None = None

    def start(self, session: zenoh.Session, keys: RunKeys) -> None:
        self._subscriber = session.declare_subscriber(keys.stats_all(), self.on_sample)

    def on_sample(self, sample: zenoh.Sample) -> None:
        try:
            report = STATS_REPORT.decode(sample.payload.to_bytes())
        except DescriptorError as exc:
            self.malformed.refuse(sample.key_expr, exc)
            return
        with self._lock:
            self._reports[report.node] = (time.monotonic(), report)

    def fresh(self, now: float, running: Callable[[str], bool]) -> dict[str, StatsReport]:
        """The reports of the last :data:`FRESH_S` seconds from nodes ``running`` says run."""
        with self._lock:
            latest = list(self._reports.items())
        return {node: report for node, (seen, report) in latest
                if now - seen < FRESH_S and running(node)}

    def findings(self, now: float, running: Callable[[str], bool]) -> list[str]:
        """New or changed bottleneck findings (see :class:`Diagnoser`)."""
        return self._diagnoser.lines(self.fresh(now, running))

    def close(self) -> None:
        if self._subscriber is not None:
            self._subscriber.undeclare()
            self._subscriber = None
