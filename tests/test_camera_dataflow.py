"""The built-in camera pipeline end to end: camera -> detector + GPU consumer -> sink."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pinflow.nodes import framing
from pinflow.nodes.sink import Tracker

pytest.importorskip("torch")

DATAFLOWS = Path(__file__).resolve().parent / "dataflows"


def _records(run) -> list[dict]:
    lines = (run.results / "latency.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_thirty_small_frames_arrive_intact_and_the_sink_writes_a_record_for_each(pinflow):
    run = pinflow("run", "camera_small.yml")
    assert run.returncode == 0, run.output
    records = _records(run)
    assert [r["frame"] for r in records] == list(range(30))
    verified = [r["verified"] for r in records if r["verified"] is not None]
    assert len(verified) >= 5 and all(verified), records
    assert all(r["latency_ns"] > 0 and r["device"] for r in records)
    assert "summary: frames=30" in run.stdout
    assert "integrity_passed=6 integrity_failed=0" in run.stdout


def _variant(tmp_path: Path, **replace: str) -> Path:
    """camera_small.yml with some text replaced, written next to the test's results."""
    text = (DATAFLOWS / "camera_small.yml").read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "camera_variant.yml"
    path.write_text(text)
    return path


def test_replayed_frames_are_sent_as_recorded_and_pass_the_checksum_check(pinflow, tmp_path):
    rng = np.random.default_rng(3)
    recording = rng.integers(0, 120, (4, 240, 320, 4), dtype=np.uint8)
    recording[:, 100:150, 50:90, :3] = 255
    np.save(tmp_path / "recording.npy", recording)
    flow = _variant(tmp_path, **{"--frames 30": "--frames 30 --replay recording.npy"})
    run = pinflow("run", str(flow))
    assert run.returncode == 0, run.output
    records = _records(run)
    assert len(records) == 30
    assert [r["verified"] for r in records if r["verified"] is not None] == [True] * 6
    assert framing.verify(recording[0])[1] is False, "replayed frames carry no stamp"


def test_the_sinks_verdict_counts_missing_frames_and_failed_checks():
    tracker = Tracker()
    for frame in (0, 1, 3):
        tracker.add({"frame": frame, "latency_ns": 2_000_000 * (frame + 1), "device": "cpu",
                     "verified": frame != 3}, {"camera_dropped": 0, "queue_dropped": 1},
                    now=10.0 + frame * 0.1)
    assert tracker.missing == 1
    assert tracker.fps(now=10.35) == 3.0 and tracker.fps(now=11.25) == 1.0
    assert tracker.summary()["max_ms"] == 8.0 and tracker.summary()["queue_dropped"] == 1
    assert tracker.problems(expect_frames=3) == ["1 frame(s) failed the integrity check"]
    assert tracker.problems(expect_frames=4)[0] == "expected 4 frames, got 3"
    assert Tracker().problems(expect_frames=0) == []
