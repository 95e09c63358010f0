"""The shared-memory data plane with real processes: zero-copy, slot reuse, back-pressure,
crashes on either side, hostile descriptors, and nothing left in /dev/shm."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

FRAME_BYTES = 1080 * 1920 * 4


def _wait_for(path: Path, predicate=lambda text: True, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = None
        if text is not None and predicate(text):
            return text
        time.sleep(0.02)
    raise AssertionError(f"{path} not ready in {timeout}s")


@pytest.mark.parametrize("mode", ["copy", "loan"])
def test_1080p_frames_arrive_zero_copy_intact_with_dtype_and_shape(pinflow, mode):
    run = pinflow("run", "shm_frames.yml", env={"MODE": mode})
    assert run.returncode == 0, run.output
    consumer = run.result("consumer")
    assert consumer["indices"] == list(range(20))
    assert consumer["torn"] == consumer["wrong_type"] == 0
    assert consumer["not_zero_copy"] == 0, "frames must be views of the shared segment"
    assert consumer["segments_mapped"] == 1, "a consumer maps each segment once"
    stats = run.result("producer")["stats"]
    assert stats["sent_shm"] == 20 and stats["sent_inline"] == 0
    assert stats["pools_created"] == 1
    assert stats["pool"]["slot_bytes"] == FRAME_BYTES and stats["pool"]["slots"] == 4


def test_slots_are_reused_across_many_frames_without_new_segments(pinflow):
    run = pinflow("run", "shm_frames.yml", env={"FRAMES": "90", "SHAPE": "256x256x4"})
    assert run.returncode == 0, run.output
    assert run.result("consumer")["indices"] == list(range(90))
    stats = run.result("producer")["stats"]
    assert stats["pools_created"] == 1
    assert stats["pool"]["acquired_total"] == 90 and stats["pool"]["slots"] == 4


def test_slow_consumer_drops_oldest_while_fast_consumer_gets_every_frame(pinflow):
    run = pinflow("run", "shm_slow_fast.yml")
    assert run.returncode == 0, run.output
    fast, slow = run.result("fast"), run.result("slow")
    assert fast["indices"] == list(range(60))
    assert slow["dropped"] > 0 and len(slow["indices"]) < 60
    assert slow["indices"] == sorted(slow["indices"])
    assert fast["torn"] == slow["torn"] == 0
    pool = run.result("producer")["stats"]["pool"]
    assert pool["exhausted_waits"] == 0, "the producer never waited for a slot"


def test_consumer_keeping_every_frame_makes_blocking_producer_fail_clearly(pinflow):
    run = pinflow("run", "shm_holder.yml", "--stop-after", "10")
    assert run.returncode == 1
    producer = run.result("producer")
    assert producer["sent"] == 3
    assert "all 3 slots of 8294400 bytes are still held by consumers" in producer["error"]
    assert "node 'producer' failed: exit code 1" in run.stderr
    assert run.result("consumer")["torn"] == 0


def test_consumer_keeping_every_frame_makes_dropping_producer_count_drops(pinflow):
    run = pinflow("run", "shm_holder_drop.yml", "--stop-after", "10")
    assert run.returncode == 0, run.output
    producer = run.result("producer")
    assert producer["sent"] == 3 and producer["dropped"] == 7
    assert producer["stats"]["dropped_full"] == 7
    assert run.result("consumer")["indices"] == [0, 1, 2]


def test_killed_consumer_slots_are_reclaimed_and_other_consumer_keeps_going(pinflow, tmp_path):
    results = tmp_path / "results"
    killed_at: list[float] = []

    def kill_hoarder() -> None:
        _wait_for(results / "hoarder.progress", lambda t: int(t) >= 4)
        pid = int(_wait_for(results / "hoarder.pid"))
        killed_at.append(time.monotonic())
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_hoarder, daemon=True)
    killer.start()
    run = pinflow("run", "shm_kill_consumer.yml", env={"REPORT_PID": "1"})
    killer.join(timeout=5)
    assert killed_at, run.output
    steady = run.result("steady")
    assert steady["indices"] == list(range(45)) and steady["torn"] == 0
    producer = run.result("producer")
    assert producer["error"] is None and producer["sent"] == 45
    # The producer was blocked on the hoarder's slots; it got them back within a second.
    assert producer["longest_send_s"] < 1.5
    assert "node 'hoarder' failed: killed by signal SIGKILL" in run.stderr


def test_killed_producer_closes_inputs_without_torn_frames_and_segments_go(pinflow, tmp_path):
    results = tmp_path / "results"

    def kill_producer() -> None:
        _wait_for(results / "consumer.progress", lambda t: int(t) >= 10)
        os.kill(int(_wait_for(results / "producer.pid")), signal.SIGKILL)

    killer = threading.Thread(target=kill_producer, daemon=True)
    killer.start()
    run = pinflow("run", "shm_kill_producer.yml", "--stop-after", "30", env={"REPORT_PID": "1"})
    killer.join(timeout=5)
    consumer = run.result("consumer")
    assert consumer["closed"] is True
    assert consumer["torn"] == 0 and len(consumer["indices"]) >= 10
    assert consumer["indices"] == list(range(len(consumer["indices"])))
    assert consumer["producer_segments_left"] == 0, "launcher unlinks a dead producer's pool"
    assert "node 'producer' failed: killed by signal SIGKILL" in run.stderr
    assert "node 'consumer' failed" not in run.stderr


def test_forged_descriptors_are_refused_and_real_frames_still_arrive(pinflow):
    run = pinflow("run", "shm_hostile.yml")
    assert run.returncode == 0, run.output
    consumer = run.result("consumer")
    assert consumer["indices"] == [0, 1]
    assert consumer["malformed"] == run.result("producer")["attacks"] == 13
    assert "dropped malformed message" in run.stdout
    assert "does not belong to producer/frames" in run.stdout


def test_consumer_that_never_reads_is_blamed_and_its_producer_exits_normally(pinflow):
    run = pinflow("run", "shm_never_reads.yml", "--stop-after", "3", "--grace", "4")
    assert run.returncode == 1
    assert "node 'hog' failed: did not stop within the grace period (SIGTERM)" in run.stderr
    assert "node 'producer' failed" not in run.stderr, run.output
    assert "still running after STOP: sending SIGTERM" in run.stdout
    assert "node 'producer' still running after STOP" not in run.stdout
    assert "producer/frames: closing while consumers still hold slots after 1.0s: 'hog' " \
        "holds 3" in run.stdout
    assert run.result("producer")["error"] is None
