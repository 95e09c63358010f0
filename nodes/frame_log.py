"""Per-frame records of a latency measurement, written as JSON lines in batches.

A consumer that measures latency should not pay for the measurement on every frame: with a
``json.dumps`` and a file write per frame, the bench's bare Python consumer used 0.82-0.92 %
of a core at 30 Hz on the 2-vCPU development VM, with this 0.63-0.73 % (two alternating
rounds each): ~60 µs a frame, a quarter of its CPU; every arm's consumer did that work.
Records are kept as tuples and written every ``BATCH`` frames (and at ``close``). The file
is the same either way: one JSON object per line, in arrival order.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import TracebackType
from typing import Any

BATCH = 256
"""Records kept before they are written: ~8.5 s of frames at 30 Hz."""

FIELDS = ("frame", "sent_ns", "usable_ns", "h2d_ns", "device", "pinned", "read_ns")
"""A line's keys: ``read_ns`` is how long the consumer took to read one byte per page (on
the CPU; None when the frame went to a device, whose copy is ``h2d_ns``), a part of every
latency that grows with the frame, not with the transport."""


class FrameLog:
    """``log(...)`` one frame as it becomes usable; ``close()`` writes what is left.

    ``stamp`` is the name the producer's send time gets in each line (``sent_ns`` for the
    bench, the camera's ``capture_ns`` for the camera pipeline)."""

    def __init__(self, path: Path | str, *, stamp: str = "sent_ns", batch: int = BATCH) -> None:
        self._out = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._keys = ("frame", stamp, *FIELDS[2:])
        self._batch = max(1, batch)
        self._pending: list[tuple[Any, ...]] = []

    def log(self, frame: Any, sent_ns: Any, h2d_ns: int | None = None, device: str = "cpu",
            pinned: bool = False, *, usable_ns: int | None = None,
            read_ns: int | None = None) -> None:
        """Record one frame; ``usable_ns`` defaults to now (``time.time_ns()``)."""
        if usable_ns is None:
            usable_ns = time.time_ns()
        self._pending.append((frame, sent_ns, usable_ns, h2d_ns, device, pinned, read_ns))
        if len(self._pending) >= self._batch:
            self.flush()

    def write(self, record: dict[str, Any]) -> None:
        """One line of its own (a summary), after the frames logged before it."""
        self.flush()
        self._out.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        keys = self._keys
        lines = [json.dumps(dict(zip(keys, row, strict=True))) + "\n" for row in self._pending]
        self._pending.clear()
        self._out.writelines(lines)
        self._out.flush()

    def close(self) -> None:
        if not self._out.closed:
            self.flush()
            self._out.close()

    def __enter__(self) -> FrameLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
