"""What runs leave behind, and who may remove it: real runs, real launchers killed -9,
real shared memory. A dead run's files go (at the next `pinflow run`, or with `pinflow
clean`); a live run's never do, not even when its lock file was deleted behind its back,
and not when the test suite cleans up after itself."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from conftest import DATAFLOWS, BackgroundRun, leftover_guard

from pinflow.errors import PinnedBudgetExceeded
from pinflow.transport import budget, cleanup
from pinflow.transport.cleanup import RunLock
from pinflow.transport.segment import SHM_DIR_ENV, shm_dir
from pinflow.transport.session import runs_dir


@dataclass
class LiveRun:
    """A `pinflow run` in the background."""

    proc: subprocess.Popen[str]
    run_id: str
    shm: Path
    sockets: Path
    lines: list[str] = field(default_factory=list)

    def files(self) -> dict[str, int]:
        """The run's shared-memory files and sockets: path -> inode."""
        paths = [*self.shm.glob(f"pinflow-{self.run_id}*"), *self.sockets.glob("*")]
        return {str(p): p.stat().st_ino for p in paths}

    def nodes(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children()


@contextlib.contextmanager
def live_run(flow: str, tmp_path: Path, *, env: dict[str, str] | None = None,
             stop_after: float = 60) -> Iterator[LiveRun]:
    """Start ``flow`` and yield once its pool exists; SIGINT (or SIGKILL) it on the way out."""
    with BackgroundRun(DATAFLOWS / flow, tmp_path, stop_after=stop_after, env=env) as bg:
        run_id = bg.wait_started(60)
        shm = Path(bg.env.get(SHM_DIR_ENV) or shm_dir())
        tmp = Path(bg.env.get("TMPDIR") or os.environ["TMPDIR"])
        run = LiveRun(bg.proc, run_id, shm, tmp / f"pinflow-{os.getuid()}" / run_id, bg.lines)
        deadline = time.monotonic() + 30
        while not list(shm.glob(f"pinflow-{run_id}.producer.frames.*")):
            assert time.monotonic() < deadline, "the producer's pool never appeared"
            time.sleep(0.05)
        yield run


def kill_launcher(run: LiveRun) -> None:
    """kill -9 the launcher; its nodes die with it (PDEATHSIG). Its files stay behind."""
    nodes = run.nodes()
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.wait(timeout=10)
    psutil.wait_procs(nodes, timeout=10)
    assert not [p for p in nodes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_clean_removes_everything_a_killed_launcher_left(pinflow, tmp_path):
    with live_run("pinned_stream.yml", tmp_path) as run:
        kill_launcher(run)
        left = run.files()
    assert any(p.endswith(".lock") for p in left)
    assert any(p.endswith(".alive") for p in left)
    assert any(p.endswith(".pinned") for p in left)
    assert run.sockets.is_dir()
    clean = pinflow("clean")
    assert clean.returncode == 0, clean.output
    assert run.files() == {}
    assert not run.sockets.exists(), "the dead run's socket folder is removed too"
    assert f"removed {run.sockets}" in clean.stdout
    assert "live runs untouched" in clean.stdout


def test_run_removes_dead_runs_leftovers_at_start_and_their_pools_block_nothing(
        pinflow, tmp_path):
    """The dead run's 32 MiB pinned pool plus the new run's would pass the 48 MiB budget."""
    with live_run("pinned_stream.yml", tmp_path) as dead:
        kill_launcher(dead)
    assert dead.files()
    run = pinflow("run", "pinned_stream.yml", "--stop-after", "2")
    assert run.returncode == 0, run.output
    assert "pinned pools would use" not in run.output
    line = next(x for x in run.stdout.splitlines() if "leftover(s) of dead run(s)" in x)
    assert dead.run_id in line and f"pinflow-{dead.run_id}.lock" in line
    assert dead.files() == {} and not dead.sockets.exists()


def test_clean_leaves_a_live_run_alone_even_when_its_lock_file_was_deleted(pinflow, tmp_path):
    with live_run("pinned_stream.yml", tmp_path, stop_after=60) as run:
        (lock,) = run.shm.glob(f"pinflow-{run.run_id}.lock")
        lock.unlink()  # what the old test suite's cleanup did to live runs
        files = run.files()
        clean = pinflow("clean")
        assert clean.returncode == 0, clean.output
        assert run.files() == files, "a segment some process maps, a node's liveness " \
            "file and a socket someone listens on must stay"
        assert "still mapped by pid" in clean.stdout
        progress = tmp_path / "results" / "consumer.progress"
        before = int(progress.read_text())
        deadline = time.monotonic() + 20
        while int(progress.read_text()) < before + 30:  # the run still streams
            assert time.monotonic() < deadline, "the run stopped streaming after clean"
            time.sleep(0.05)
    assert run.proc.returncode == 0, "".join(run.lines)


@pytest.mark.parametrize("how", ["a file", "another user's"])
def test_a_start_that_fails_after_taking_the_run_lock_leaves_nothing(pinflow, tmp_path, how):
    if how == "another user's" and os.geteuid() != 0:
        pytest.skip("needs root to create a folder owned by another user")
    bad_tmp = tmp_path / "tmp"
    bad_tmp.mkdir()
    runs = bad_tmp / f"pinflow-{os.getuid()}"
    if how == "a file":
        runs.write_text("not a folder")
        expected = "is not a folder"
    else:
        runs.mkdir(mode=0o700)
        os.chown(runs, 65534, 65534)
        expected = f"belongs to uid 65534, not to you (uid {os.getuid()})"
    before = set(shm_dir().iterdir())
    run = pinflow("run", "stop.yml", "--stop-after", "1", env={"TMPDIR": str(bad_tmp)})
    assert run.returncode == 1
    assert "Traceback" not in run.output
    errors = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("pinflow: error: "), run.stderr
    assert expected in errors[0] and "TMPDIR" in errors[0]
    assert set(shm_dir().iterdir()) == before, "the run lock must not leak"
    assert not list((tmp_path / "logs").glob("*")), "no empty log folder either"


def test_only_live_pools_count_against_the_budget_by_allocated_bytes(tmp_path):
    """A sparse 1 TiB file named like a pool, or a dead run's pool, takes no pinned memory
    and blocks nothing; a live run's pool counts, and the error lists it."""
    sparse = shm_dir() / "pinflow-evil.x.y.0.pinned"
    with open(sparse, "wb") as fh:
        fh.truncate(1 << 40)  # `truncate -s 1T`: uses no memory
    dead = shm_dir() / f"pinflow-dead{secrets.token_hex(3)}.cam.out.0a.pinned"
    dead.write_bytes(b"\1" * (8 << 20))  # a killed run's pool, its lock gone
    try:
        budget.check({"cam/out": 16 << 20}, 32 << 20)  # today: refused by 1 TiB + 8 MiB
        live = RunLock("live" + secrets.token_hex(3))
        with live:
            pool = shm_dir() / f"pinflow-{live.run_id}.cam.out.0b.pinned"
            pool.write_bytes(b"\1" * (20 << 20))
            with pytest.raises(PinnedBudgetExceeded) as refused:
                budget.check({"cam/out": 16 << 20}, 32 << 20)
        text = str(refused.value)
        assert "pinned pools would use 36.0 MiB but the pinned budget is 32.0 MiB" in text
        assert f"existing {pool.name}: 20.0 MiB (a pool of a live run)" in text
        assert "not counted: 2 other file(s)" in text
        assert sparse.name not in text and dead.name not in text
    finally:
        sparse.unlink()
        dead.unlink(missing_ok=True)


def test_the_suites_cleanup_never_touches_a_live_run_outside_its_folders(pinflow, tmp_path):
    """A real run with its own PINFLOW_SHM_DIR and TMPDIR (as a user's run beside the test
    suite): the session's leftover guard, `pinflow clean` and a dead-run sweep in the
    session's folders leave its lock, segments and sockets alone, and it keeps working."""
    own_shm = Path("/dev/shm") / f"pftest-live-{secrets.token_hex(4)}"
    own_tmp = Path(tempfile.gettempdir()) / f"own-{secrets.token_hex(3)}"  # short: sockets
    own_shm.mkdir(mode=0o700)
    own_tmp.mkdir()
    try:
        env = {SHM_DIR_ENV: str(own_shm), "TMPDIR": str(own_tmp)}
        with live_run("pinned_stream.yml", tmp_path, env=env) as run:
            files = run.files()
            assert any(p.endswith(".lock") for p in files)
            assert any(p.endswith(".sock") for p in files)
            with leftover_guard():
                clean = pinflow("clean")
                sweep = cleanup.sweep_dead_runs()
            assert clean.returncode == 0 and sweep.removed == []
            assert str(own_shm) not in clean.output and str(own_tmp) not in clean.output
            assert runs_dir() != run.sockets.parent
            assert run.files() == files
            progress = tmp_path / "results" / "consumer.progress"
            before = int(progress.read_text())
            deadline = time.monotonic() + 20
            while int(progress.read_text()) < before + 30:
                assert time.monotonic() < deadline, "the live run stopped streaming"
                time.sleep(0.05)
        assert run.proc.returncode == 0, "".join(run.lines)
        assert list(own_shm.iterdir()) == [], "the run cleaned up after itself"
    finally:
        shutil.rmtree(own_shm, ignore_errors=True)
        shutil.rmtree(own_tmp, ignore_errors=True)
