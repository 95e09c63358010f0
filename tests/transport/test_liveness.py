"""Node liveness locks against real processes: a stopped process is alive, a killed one is
gone, and a restarted node is never mistaken for its predecessor."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys

import pytest

from pinflow.errors import TransportError
from pinflow.transport import segment as seg_mod
from pinflow.transport.liveness import NodeLock, PeerWatch, alive_name, parse_alive_name
from pinflow.transport.segment import parse_segment_name

HOLDER = """
import sys
from pinflow.transport.liveness import NodeLock
lock = NodeLock(sys.argv[1], sys.argv[2])
lock.acquire()
print("locked", flush=True)
sys.stdin.read()
lock.release()
"""


def hold(run_id: str, node_id: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", HOLDER, run_id, node_id],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline() == "locked\n"
    return child


def end(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.kill()
    child.wait(timeout=10)
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            pipe.close()


def test_names_never_match_segments_or_run_locks(run_id: str) -> None:
    name = alive_name(run_id, "cam")
    assert name == f"pinflow-{run_id}.cam.alive"
    assert parse_alive_name(name) == (run_id, "cam")
    assert parse_segment_name(name) is None
    assert parse_alive_name(f"pinflow-{run_id}.cam.out.0a") is None
    assert parse_alive_name(f"pinflow-{run_id}.lock") is None
    with pytest.raises(ValueError):
        alive_name(run_id, "../x")


def test_a_stopped_holder_is_alive_and_a_killed_one_is_gone(run_id: str) -> None:
    gone: queue.Queue[str] = queue.Queue()
    watch = PeerWatch(run_id, gone.put)
    child = hold(run_id, "cam")
    try:
        os.kill(child.pid, signal.SIGSTOP)
        watch.lost("cam")
        with pytest.raises(queue.Empty):
            gone.get(timeout=1.0)  # five probes: a paused process still holds its lock
        assert watch.unreachable() == {"cam"}
        os.kill(child.pid, signal.SIGCONT)
        watch.back("cam")  # the same process is back: nothing is reported
        assert watch.unreachable() == set()
        watch.lost("cam")
        child.kill()
        assert gone.get(timeout=5) == "cam"
        assert watch.unreachable() == set()
    finally:
        end(child)
        watch.close()
        (seg_mod.shm_dir() / alive_name(run_id, "cam")).unlink(missing_ok=True)


def test_a_successor_is_not_mistaken_for_the_process_that_went_away(run_id: str) -> None:
    """The old process died, a new one holds a new lock file under the same name: the
    watcher, still holding the old file, sees it free and reports the old one gone as soon
    as the newcomer's token arrives, before anything is addressed to the newcomer."""
    gone: list[str] = []
    watch = PeerWatch(run_id, gone.append)
    first = hold(run_id, "cam")
    successor = None
    try:
        os.kill(first.pid, signal.SIGSTOP)
        watch.lost("cam")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        successor = hold(run_id, "cam")
        watch.back("cam")
        assert gone == ["cam"]
    finally:
        watch.close()
        end(first)
        if successor is not None:
            end(successor)
        (seg_mod.shm_dir() / alive_name(run_id, "cam")).unlink(missing_ok=True)


def test_a_second_process_for_the_same_node_is_refused(run_id: str) -> None:
    child = hold(run_id, "cam")
    try:
        with pytest.raises(TransportError, match="already running"):
            NodeLock(run_id, "cam").acquire()
    finally:
        end(child)
    lock = NodeLock(run_id, "cam")
    lock.acquire()  # the dead holder's file is replaced
    lock.release()
    assert not (seg_mod.shm_dir() / alive_name(run_id, "cam")).exists()
