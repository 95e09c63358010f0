"""Peers that are paused, not dead: a SIGSTOP longer than the zenoh lease must cost nothing
but the messages sent meanwhile. Real processes, real shared memory, a real pause."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from pinflow.transport.segment import shm_dir
from pinflow.transport.session import LEASE_ENV

LEASE_MS = 1500
PAUSE_S = 3 * LEASE_MS / 1000
"""Long enough for every peer to drop the paused process's links and tokens."""


def _wait_for(path: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} did not appear in {timeout}s")


def _pause(results: Path, node_id: str, ready: str, done: list[str]) -> None:
    """SIGSTOP ``node_id`` once it wrote ``<node>.<ready>``, SIGCONT after PAUSE_S."""
    _wait_for(results / f"{node_id}.{ready}")
    pid = int(_wait_for(results / f"{node_id}.pid"))
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(PAUSE_S)
    finally:
        os.kill(pid, signal.SIGCONT)
    (results / f"{node_id}.resumed").write_text("1")
    done.append(node_id)


def test_paused_consumer_keeps_its_held_frames_intact_and_carries_on(pinflow, tmp_path):
    results = tmp_path / "results"
    done: list[str] = []
    pauser = threading.Thread(target=_pause, args=(results, "consumer", "holding", done),
                              daemon=True)
    pauser.start()
    run = pinflow("run", "shm_pause_consumer.yml", "--stop-after", str(PAUSE_S + 12),
                  env={"REPORT_PID": "1", LEASE_ENV: str(LEASE_MS)}, timeout=120)
    pauser.join(timeout=5)
    assert done == ["consumer"], run.output
    consumer = run.result("consumer")
    assert consumer["checked"] == [{"expected": i, "found": i} for i in range(4)], (
        "frames held through the pause were overwritten")
    assert consumer["stop_reason"] == "MANUAL" and not consumer["closed"], run.output
    assert len(consumer["after_resume"]) > 30, "the flow resumes after the pause"
    assert run.returncode == 0, run.output



def test_node_stopping_with_launcher_lost_while_the_launcher_lives_fails_the_run(
        pinflow, tmp_path):
    """The run lock is how a node tells a launcher that is gone from one it cannot reach.
    Removed behind the launcher's back (the old test suite's cleanup did that), the node
    stops after its pause: the run must then fail and say why, not exit 0."""
    results = tmp_path / "results"
    done: list[str] = []

    def remove_lock_then_pause() -> None:
        _wait_for(results / "consumer.holding")
        (lock,) = shm_dir().glob("pinflow-*.lock")
        lock.unlink()
        _pause(results, "consumer", "holding", done)

    pauser = threading.Thread(target=remove_lock_then_pause, daemon=True)
    pauser.start()
    run = pinflow("run", "shm_pause_consumer.yml", "--stop-after", str(PAUSE_S + 8),
                  env={"REPORT_PID": "1", LEASE_ENV: str(LEASE_MS)}, timeout=120)
    pauser.join(timeout=5)
    assert done == ["consumer"], run.output
    assert run.result("consumer")["stop_reason"] == "LAUNCHER_LOST"
    assert run.returncode == 1, run.output
    assert "node 'consumer' failed: exit code 75 (it stopped with LAUNCHER_LOST while the " \
        "launcher was running" in run.stderr
    assert "node 'producer' failed" not in run.stderr


def test_a_node_that_dies_before_it_is_ready_is_not_waited_for(pinflow):
    run = pinflow("run", "early_crash.yml", "--stop-after", "2")
    assert run.returncode == 1
    assert "node 'crasher' failed: exit code 1" in run.stderr
    assert "crasher died before creating its Node" in run.stderr
    # The counter waits for its peers to join; for a dead one it used to wait 10 s, then
    # warn. The launcher declares it gone, and nobody waits.
    assert "not reachable yet" not in run.output, run.output
    assert "started: 3 node(s)" in run.stdout
    recorded = run.result("recorder")["events"]
    assert len([e for e in recorded if e["type"] == "INPUT"]) > 20


def test_paused_producer_keeps_its_consumers_inputs_open_and_the_stream_resumes(pinflow,
                                                                               tmp_path):
    results = tmp_path / "results"
    progress = results / "consumer.progress"
    done: list[str] = []
    at_pause: list[int] = []
    at_resume: list[int] = []

    def pause_producer() -> None:
        deadline = time.monotonic() + 60
        while not (progress.exists() and int(progress.read_text() or 0) >= 10):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        at_pause.append(int(progress.read_text()))
        (results / "producer.streaming").write_text("1")
        _pause(results, "producer", "streaming", done)
        at_resume.append(int(progress.read_text()))

    pauser = threading.Thread(target=pause_producer, daemon=True)
    pauser.start()
    run = pinflow("run", "shm_pause_producer.yml", "--stop-after", str(PAUSE_S + 10),
                  env={"REPORT_PID": "1", LEASE_ENV: str(LEASE_MS)}, timeout=120)
    pauser.join(timeout=5)
    assert done == ["producer"], run.output
    assert run.returncode == 0, run.output
    consumer = run.result("consumer")
    assert consumer["torn"] == 0
    indices = consumer["indices"]
    assert len(indices) > at_resume[0] + 60, "the stream resumed after the pause"
    assert indices == sorted(set(indices)), "in order, no duplicates"
    # A descriptor still in the producer's send queue when it was stopped dies with its
    # link; nothing else may be missing (and its slot comes back: the stream goes on).
    missing = set(range(indices[-1])) - set(indices)
    assert all(at_pause[0] - 2 <= i <= at_pause[0] + 5 for i in missing), (missing, at_pause)
