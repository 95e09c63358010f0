"""Counting and logging what a peer sent that could not be used.

A peer that floods a node with garbage must not flood its log too: the first ``BURST``
refusals are logged one line each, then at most one line every ``INTERVAL_S`` seconds,
saying how many were not logged in between. Every refusal is counted.
"""

from __future__ import annotations

import logging
import threading
import time

from pinflow.errors import DescriptorError

BURST = 20
INTERVAL_S = 5.0


class Malformed:
    """Thread-safe counter of refused messages with a rate-limited log."""

    def __init__(self, who: str, logger: logging.Logger) -> None:
        self._who = who
        self._log = logger
        self._lock = threading.Lock()
        self._logged = 0
        self._unlogged = 0
        self._last = 0.0
        self.count = 0
        """Messages refused so far."""

    def refuse(self, where: object, reason: BaseException | str) -> None:
        """Count one refused message from ``where`` (a key expression) and maybe log it."""
        with self._lock:
            self.count += 1
            now = time.monotonic()
            if self._logged >= BURST and now - self._last < INTERVAL_S:
                self._unlogged += 1
                return
            skipped, self._unlogged = self._unlogged, 0
            self._logged += 1
            self._last = now
        if isinstance(reason, BaseException) and not isinstance(reason, DescriptorError):
            reason = f"{type(reason).__name__}: {reason}"
        more = f" ({skipped} more not logged since the last line)" if skipped else ""
        self._log.warning("%s: dropped malformed message on %s: %s%s", self._who, where,
                          reason, more)

