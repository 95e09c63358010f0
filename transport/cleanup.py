"""Remove the /dev/shm files of runs that ended without cleaning up (crash, SIGKILL).

A running launcher holds an exclusive ``flock`` on ``pinflow-{run_id}.lock`` for its whole
life. The kernel drops that lock when the process dies however it dies, so "the lock file
exists and cannot be locked" is a reliable liveness test that needs no pid bookkeeping.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from types import TracebackType

from pinflow.errors import LaunchError
from pinflow.transport import segment as _segment

_ID = re.compile(r"[A-Za-z0-9_-]+")
_LOCK = re.compile(r"pinflow-([A-Za-z0-9_-]+)\.lock")
_RETRIES = 5


def _shm_dir() -> Path:
    return _segment.shm_dir()


def lock_name(run_id: str) -> str:
    """File name of the lock a run's launcher holds."""
    _check_id("run id", run_id)
    return f"{_segment.PREFIX}{run_id}.lock"


def _check_id(kind: str, value: str) -> None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(f"invalid {kind} {value!r}: use only letters, digits, '_' and '-'")


def _run_of(name: str) -> str | None:
    """Run id of a segment or lock file name; None for anything that is not ours."""
    parsed = _segment.parse_segment_name(name)
    if parsed is not None:
        return parsed[0]
    match = _LOCK.fullmatch(name)
    return match.group(1) if match else None


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except OSError:  # already gone, or someone else's file in the sticky /dev/shm
        return False
    return True


def _remove_segments(run_id: str, node_id: str | None) -> list[str]:
    removed = []
    for path in sorted(_shm_dir().glob(_segment.run_glob(run_id))):
        parsed = _segment.parse_segment_name(path.name)
        if parsed is None or parsed[0] != run_id:
            continue
        if node_id is not None and parsed[1] != node_id:
            continue
        if _unlink(path):
            removed.append(path.name)
    return removed


def remove_run(run_id: str) -> list[str]:
    """Unlink every segment of ``run_id`` (not its lock); returns the removed names."""
    return _remove_segments(run_id, None)


def remove_node_segments(run_id: str, node_id: str) -> list[str]:
    """Unlink the segments of one node of a run, after that producer died."""
    _check_id("node id", node_id)
    return _remove_segments(run_id, node_id)


def _try_lock(path: Path) -> int | None:
    """An fd holding ``path`` exclusively, or None if someone else holds it."""
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = path.stat(follow_symlinks=False)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


class RunLock:
    """Marks a run as alive for as long as the launcher holds it."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.path = _shm_dir() / lock_name(run_id)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Create and lock the file; LaunchError if another launcher holds this run."""
        if self._fd is not None:
            return
        if not self.path.parent.is_dir():
            raise LaunchError(
                f"shared-memory folder {self.path.parent} does not exist (create it, or unset "
                f"{_segment.SHM_DIR_ENV})"
            )
        for _ in range(_RETRIES):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LaunchError(
                    f"run {self.run_id!r} is already running (lock {self.path} is held)"
                ) from None
            # A cleaner may have unlinked the file between our open and flock: retry then.
            if _same_file(fd, self.path):
                os.fchmod(fd, 0o600)
                self._fd = fd
                return
            os.close(fd)
        raise LaunchError(f"could not lock {self.path}: it keeps being removed")

    def release(self) -> None:
        """Remove the run's segments, then the lock file; idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            remove_run(self.run_id)
            _unlink(self.path)
        finally:
            os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def clean_dead_runs() -> list[str]:
    """Remove every file of runs whose launcher is gone; never touches a live run."""
    runs: set[str] = set()
    with os.scandir(_shm_dir()) as entries:
        for entry in entries:
            run_id = _run_of(entry.name)
            if run_id is not None:
                runs.add(run_id)
    removed: list[str] = []
    for run_id in sorted(runs):
        lock = _shm_dir() / lock_name(run_id)
        try:
            fd = _try_lock(lock)
        except FileNotFoundError:
            removed += remove_run(run_id)  # segments without a lock: launcher gone
            continue
        except OSError:
            continue  # not ours to judge (permissions, a symlink): leave it alone
        if fd is None:
            continue  # a launcher holds it: alive
        try:
            # Holding the lock while removing keeps a racing RunLock.acquire from trusting
            # this file; it retries on a fresh one.
            removed += remove_run(run_id)
            if _unlink(lock):
                removed.append(lock.name)
        finally:
            os.close(fd)
    return removed
