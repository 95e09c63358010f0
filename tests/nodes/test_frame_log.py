"""Latency records: the same JSON lines as one write per frame, written in batches."""

from __future__ import annotations

import json
import time
from pathlib import Path

from pinflow.nodes.frame_log import FrameLog


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_frames_are_written_in_batches_and_in_order_with_the_summary_last(tmp_path: Path):
    path = tmp_path / "latencies.jsonl"
    before = time.time_ns()
    with FrameLog(path, stamp="capture_ns", batch=2) as log:
        log.log(0, 10, usable_ns=20)
        assert _lines(path) == [], "kept in memory until a batch is full"
        log.log(1, 11, 5, "cuda:0", True, usable_ns=21, read_ns=3)
        assert [r["frame"] for r in _lines(path)] == [0, 1], "a full batch is written"
        log.log(2, 12)
        log.write({"summary": {"received": 3}})
    records = _lines(path)
    assert records[:2] == [
        {"frame": 0, "capture_ns": 10, "usable_ns": 20, "h2d_ns": None, "device": "cpu",
         "pinned": False, "read_ns": None},
        {"frame": 1, "capture_ns": 11, "usable_ns": 21, "h2d_ns": 5, "device": "cuda:0",
         "pinned": True, "read_ns": 3}]
    assert records[2]["frame"] == 2 and records[2]["usable_ns"] >= before, "now, by default"
    assert records[3] == {"summary": {"received": 3}}, "after every frame logged before it"
