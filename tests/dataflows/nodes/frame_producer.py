"""Sends FRAMES frames (env; 0 = forever) on `frames`, one per tick, through the copy path
(MODE=copy) or the loan API (MODE=loan); PINNED=1 asks for a pinned pool; UNLINK_SEGMENT=1
removes the name of every pool as soon as it is made (before consumers are told about it),
so no consumer can map it. KEEP_TRYING=1 counts PoolExhausted and carries on instead of
stopping."""

import os
import time

import numpy as np
from frames import fill, shape_from_env
from report import report

from pinflow import Node, PoolExhausted


def _unlink_pools_at_birth() -> None:
    """Reach into the pool class on purpose: a segment that vanished behind its producer."""
    from pinflow.transport import pool

    made = pool.SlotPool.__init__

    def unlinked(self, *args, **kwargs) -> None:
        made(self, *args, **kwargs)
        self.segment.unlink()

    pool.SlotPool.__init__ = unlinked


def main() -> None:
    if os.environ.get("UNLINK_SEGMENT") == "1":
        _unlink_pools_at_birth()
    node = Node()
    total = int(os.environ.get("FRAMES", "20"))
    mode = os.environ.get("MODE", "copy")
    pinned = os.environ.get("PINNED") == "1"
    shape = shape_from_env()
    report(node.id, {"started": True})
    frame = np.empty(shape, dtype=np.uint8)
    keep_trying = os.environ.get("KEEP_TRYING") == "1"
    sent = dropped = exhausted = 0
    longest_send = 0.0
    error = None
    for event in node:
        if event["type"] != "INPUT":
            continue
        start = time.monotonic()
        try:
            if mode == "loan":
                with node.output_buffer("frames", shape, np.uint8, pinned=pinned) as buf:
                    if buf is not None:
                        fill(buf, sent)
                ok = buf is not None
            else:
                fill(frame, sent)
                ok = node.send_output("frames", frame, metadata={
                    "index": sent, "incarnation": node.restart_count}, pinned=pinned)
        except PoolExhausted as exc:
            if keep_trying:
                exhausted += 1
                continue
            error = str(exc)
            break
        longest_send = max(longest_send, time.monotonic() - start)
        sent += ok
        dropped += not ok
        if sent == int(os.environ.get("CRASH_AFTER", "0")) and node.restart_count < 2:
            os._exit(3)  # a crash without cleanup, to test restarts
        if total and sent + dropped >= total:
            break
    stats = node.stats()["outputs"]["frames"]
    report(node.id, {"sent": sent, "dropped": dropped, "error": error, "stats": stats,
                     "longest_send_s": longest_send, "exhausted": exhausted,
                     "malformed": node.stats()["malformed"]})
    if error:
        raise SystemExit(f"producer stopped: {error}")


if __name__ == "__main__":
    main()
