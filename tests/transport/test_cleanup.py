"""Run locks and dead-run cleanup, in a private folder inside the session's shm folder.

clean_dead_runs scans the whole folder, so these tests point PINFLOW_SHM_DIR at their own folder:
they must never judge (or delete) the files of other tests or runs on this machine.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pinflow.errors import LaunchError
from pinflow.transport import segment as seg_mod
from pinflow.transport.cleanup import (
    RunLock,
    clean_dead_runs,
    remove_node_segments,
    remove_run,
    sweep_dead_runs,
)
from pinflow.transport.segment import new_incarnation, parse_segment_name, segment_name
from pinflow.transport.session import runs_dir


@pytest.fixture
def shm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private PINFLOW_SHM_DIR that must be empty again when the test ends (inside the
    session's own folder: tmpfs, and nothing of anyone else's)."""
    folder = seg_mod.shm_dir() / ("pftest-" + secrets.token_hex(5))
    folder.mkdir(mode=0o700)
    monkeypatch.setenv(seg_mod.SHM_DIR_ENV, str(folder))
    yield folder
    left = sorted(p.name for p in folder.iterdir())
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    assert left == [], f"test left files behind: {left}"


def new_run() -> str:
    return "t" + secrets.token_hex(5)


def touch_segment(run_id: str, node_id: str, output_id: str = "out") -> str:
    name = segment_name(run_id, node_id, output_id, new_incarnation())
    (seg_mod.shm_dir() / name).write_bytes(b"x")
    return name


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_a_run_lock_is_a_private_file_that_a_second_launcher_cannot_take(shm: Path) -> None:
    run_id = new_run()
    with RunLock(run_id) as lock:
        assert lock.held
        assert lock.path == shm / f"pinflow-{run_id}.lock"
        assert stat.S_IMODE(os.stat(lock.path).st_mode) == 0o600
        with pytest.raises(LaunchError, match="already running"):
            RunLock(run_id).acquire()
    assert not lock.held
    assert names(shm) == set()


def test_releasing_the_lock_removes_the_runs_segments_and_the_lock(shm: Path) -> None:
    run_id, other = new_run(), new_run()
    lock = RunLock(run_id)
    lock.acquire()
    touch_segment(run_id, "a")
    touch_segment(run_id, "b")
    kept = touch_segment(other, "a")
    lock.release()
    lock.release()
    assert names(shm) == {kept}
    (shm / kept).unlink()


def test_remove_run_spares_the_lock_and_other_runs(shm: Path) -> None:
    run_id, other = new_run(), new_run()
    with RunLock(run_id) as lock:
        mine = {touch_segment(run_id, "a"), touch_segment(run_id, "lock")}
        theirs = touch_segment(other, "a")
        assert set(remove_run(run_id)) == mine
        assert names(shm) == {lock.path.name, theirs}
    (shm / theirs).unlink()


def test_remove_node_segments_removes_only_that_nodes_segments(shm: Path) -> None:
    run_id, other = new_run(), new_run()
    dead = {touch_segment(run_id, "cam", "image"), touch_segment(run_id, "cam", "depth")}
    kept = {touch_segment(run_id, "camera", "image"), touch_segment(other, "cam", "image")}
    assert set(remove_node_segments(run_id, "cam")) == dead
    assert names(shm) == kept
    with pytest.raises(ValueError):
        remove_node_segments(run_id, "*")
    for name in kept:
        (shm / name).unlink()


CHILD_HOLDS_LOCK = """
import sys
import os
os.environ["PINFLOW_SHM_DIR"] = sys.argv[1]
from pinflow.transport.cleanup import RunLock
lock = RunLock(sys.argv[2])
lock.acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_live_lock_holder_protects_its_run_and_dead_runs_are_removed(shm: Path) -> None:
    live, unlocked, lockless = new_run(), new_run(), new_run()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_HOLDS_LOCK, str(shm), live],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "locked\n"
        live_files = {f"pinflow-{live}.lock", touch_segment(live, "cam")}
        # A launcher that died left its lock file behind, unheld.
        (shm / f"pinflow-{unlocked}.lock").write_bytes(b"")
        dead_files = {f"pinflow-{unlocked}.lock", touch_segment(unlocked, "cam")}
        dead_files.add(touch_segment(lockless, "cam"))  # no lock file at all
        strangers = {"pinflow-not a run", "pinflow-x.y", "somebody-else"}
        for name in strangers:
            (shm / name).write_bytes(b"")

        assert set(clean_dead_runs()) == dead_files
        assert names(shm) == live_files | strangers

        child.kill()  # SIGKILL: no cleanup code runs, only the kernel drops the flock
        child.wait(timeout=10)
        assert child.returncode == -signal.SIGKILL
        assert set(clean_dead_runs()) == live_files
        assert names(shm) == strangers
        for name in strangers:
            (shm / name).unlink()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()
        if child.stdin is not None:
            child.stdin.close()


def test_clean_dead_runs_never_touches_a_run_locked_in_this_process(shm: Path) -> None:
    run_id = new_run()
    with RunLock(run_id) as lock:
        segment = touch_segment(run_id, "cam")
        assert clean_dead_runs() == []
        assert names(shm) == {lock.path.name, segment}
    assert names(shm) == set()


def test_a_run_lock_can_be_taken_again_after_a_cleaner_removed_the_dead_one(shm: Path) -> None:
    run_id = new_run()
    (shm / f"pinflow-{run_id}.lock").write_bytes(b"")
    assert clean_dead_runs() == [f"pinflow-{run_id}.lock"]
    with RunLock(run_id) as lock:
        assert lock.path.exists()
    assert names(shm) == set()


CHILD_MAPS_SEGMENT = """
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
mm = mmap.mmap(fd, 0)
os.close(fd)
print("mapped", flush=True)
sys.stdin.read()
"""

CHILD_HOLDS_NODE_LOCK = """
import sys
import os
os.environ["PINFLOW_SHM_DIR"] = sys.argv[1]
from pinflow.transport.liveness import NodeLock
lock = NodeLock(sys.argv[2], sys.argv[3])
lock.acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    child = subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() in ("mapped", "locked")
    return child


def _end(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.close()  # the child reads stdin to its end, then exits
    child.wait(timeout=10)
    child.stdout.close()


def test_a_segment_still_mapped_survives_a_sweep_even_without_its_run_lock(shm: Path) -> None:
    """The old test suite deleted live runs' lock files; a cleaner must still not pull the
    segments from under a process that maps them."""
    run_id = new_run()
    mapped, unmapped = touch_segment(run_id, "cam"), touch_segment(run_id, "cam", "depth")
    (shm / mapped).write_bytes(b"x" * 4096)
    child = _child(CHILD_MAPS_SEGMENT, str(shm / mapped))
    try:
        sweep = sweep_dead_runs()
        assert [p.name for p in sweep.removed] == [unmapped]
        assert sweep.kept == [f"{shm / mapped}: still mapped by pid {child.pid}"]
        assert names(shm) == {mapped}
    finally:
        _end(child)
    assert [p.name for p in sweep_dead_runs().removed] == [mapped]
    assert names(shm) == set()


def test_node_liveness_files_are_kept_while_held_and_removed_once_free(shm: Path) -> None:
    run_id = new_run()
    (shm / f"pinflow-{run_id}.lock").write_bytes(b"")  # its launcher died
    child = _child(CHILD_HOLDS_NODE_LOCK, str(shm), run_id, "cam")
    alive = f"pinflow-{run_id}.cam.alive"
    try:
        assert parse_segment_name(alive) is None, "never mistaken for a segment"
        (shm / f"pinflow-{run_id}.sink.alive").write_bytes(b"")  # a dead node's
        sweep = sweep_dead_runs()
        assert {p.name for p in sweep.removed} == {f"pinflow-{run_id}.sink.alive",
                                                    f"pinflow-{run_id}.lock"}
        assert sweep.kept == [f"{shm / alive}: its node process is still running"]
    finally:
        _end(child)
    assert [p.name for p in sweep_dead_runs().removed] == [alive]
    assert names(shm) == set()


def test_dead_runs_socket_folders_go_and_a_listened_one_stays(shm: Path) -> None:
    dead, listened = new_run(), new_run()
    runs = runs_dir()
    runs.mkdir(mode=0o700, exist_ok=True)
    (runs / dead).mkdir()
    (runs / dead / "launcher.sock").write_bytes(b"")  # a socket file nobody listens on
    (runs / listened).mkdir()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(runs / listened / "0.sock"))
        server.listen()
        sweep = sweep_dead_runs()
        assert sweep.removed == [runs / dead]
        assert sweep.kept == [f"{runs / listened}: a process still listens on "
                              f"{runs / listened / '0.sock'}"]
    finally:
        server.close()
    assert sweep_dead_runs().removed == [runs / listened]
    assert list(runs.iterdir()) == []
