"""Remove the files of runs that ended without cleaning up (crash, SIGKILL).

A running launcher holds an exclusive ``flock`` on ``pinflow-{run_id}.lock`` for its whole
life. The kernel drops that lock when the process dies however it dies, so "the lock file
exists and cannot be locked" is a reliable liveness test that needs no pid bookkeeping.
A lock file can still be deleted behind a live launcher's back, so a sweep also leaves
alone whatever a process still uses: segments someone maps (``/proc/*/maps``), node
liveness files a node holds, socket folders someone listens in (``/proc/net/unix``).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from pinflow.errors import LaunchError
from pinflow.spec.units import ID_PATTERN, check_id, is_id
from pinflow.transport import segment as _segment
from pinflow.transport.liveness import (
    lock_is_held,
    lock_name,
    parse_alive_name,
)
from pinflow.transport.session import runs_dir

_LOCK = re.compile(rf"pinflow-({ID_PATTERN.pattern})\.lock")
_RETRIES = 5


def _shm_dir() -> Path:
    return _segment.shm_dir()


def _run_of(name: str) -> str | None:
    """Run id of a segment, run lock or node liveness file name; None for anything else."""
    parsed = _segment.parse_segment_name(name)
    if parsed is not None:
        return parsed[0]
    alive = parse_alive_name(name)
    if alive is not None:
        return alive[0]
    match = _LOCK.fullmatch(name)
    return match.group(1) if match else None


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except OSError:  # already gone, or someone else's file in the sticky /dev/shm
        return False
    return True


def _remove_segments(run_id: str, node_id: str | None) -> list[str]:
    """Unlink segments (and the unheld liveness files) of a run, or of one of its nodes;
    returns the names of the removed segments."""
    removed = []
    for path in sorted(_shm_dir().glob(_segment.run_glob(run_id))):
        parsed = _segment.parse_segment_name(path.name)
        if parsed is None:
            alive = parse_alive_name(path.name)
            if (alive is not None and alive[0] == run_id
                    and node_id in (None, alive[1]) and not lock_is_held(path)):
                _unlink(path)
            continue
        if parsed[0] != run_id or node_id not in (None, parsed[1]):
            continue
        if _unlink(path):
            removed.append(path.name)
    return removed


def remove_run(run_id: str) -> list[str]:
    """Unlink every segment of ``run_id`` and the liveness files of its dead node
    processes (not its lock); returns the removed segment names."""
    return _remove_segments(run_id, None)


def remove_node_segments(run_id: str, node_id: str) -> list[str]:
    """Unlink the segments (and liveness file) of one node of a run, after it died."""
    check_id("node id", node_id)
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


@dataclass
class Sweep:
    """What a sweep of dead runs did."""

    removed: list[Path] = field(default_factory=list)
    """Files and socket folders removed."""
    kept: list[str] = field(default_factory=list)
    """Leftovers of runs whose launcher is gone that are still in use, and why."""

    def runs(self) -> list[str]:
        """Ids of the runs something was removed of."""
        found = {_run_of(p.name) or p.name for p in self.removed}
        return sorted(found)


def _mapped_files() -> dict[tuple[int, int, int], set[int]]:
    """(major, minor, inode) of every file some process maps -> the pids mapping it.

    Read from ``/proc/*/maps``: only the processes of this user (or all, as root) can be
    read, which covers every process that may map our 0600 segments.
    """
    mapped: dict[tuple[int, int, int], set[int]] = {}
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            text = maps.read_text()
        except OSError:  # gone meanwhile, or another user's process
            continue
        pid = int(maps.parent.name)
        for line in text.splitlines():
            parts = line.split(maxsplit=5)
            if len(parts) < 6 or parts[4] == "0":
                continue
            major, _, minor = parts[3].partition(":")
            try:
                key = (int(major, 16), int(minor, 16), int(parts[4]))
            except ValueError:
                continue
            mapped.setdefault(key, set()).add(pid)
    return mapped


def _listening_sockets() -> set[str]:
    """Paths of the unix sockets some process (in this network namespace) listens on."""
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return set()
    return {parts[7] for line in lines if len(parts := line.split()) >= 8}


def _file_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat(follow_symlinks=False)
    except OSError:
        return None
    return os.major(st.st_dev), os.minor(st.st_dev), st.st_ino


def _run_folders() -> dict[str, Path]:
    """``<tmp>/pinflow-<uid>/<run>/`` socket folders by run id."""
    try:
        entries = list(runs_dir().iterdir())
    except OSError:
        return {}
    return {p.name: p for p in entries
            if is_id(p.name) and p.is_dir() and not p.is_symlink()}


def _sweep_run(run_id: str, files: list[Path], folder: Path | None,
               mapped: dict[tuple[int, int, int], set[int]], listening: set[str],
               sweep: Sweep) -> None:
    """Remove what a run whose launcher is gone left, except what a process still uses."""
    in_use = False
    for path in files:
        if parse_alive_name(path.name) is not None:
            if lock_is_held(path):
                in_use = True
                sweep.kept.append(f"{path}: its node process is still running")
            elif _unlink(path):
                sweep.removed.append(path)
            continue
        if _segment.parse_segment_name(path.name) is None:
            continue  # the lock: the caller's
        key = _file_key(path)
        users = mapped.get(key, set()) if key else set()
        if users:
            in_use = True
            sweep.kept.append(f"{path}: still mapped by pid {', '.join(map(str, sorted(users)))}")
        elif _unlink(path):
            sweep.removed.append(path)
    if folder is None:
        return
    sockets = [s for s in listening if s.startswith(f"{folder}/")]
    if sockets:
        sweep.kept.append(f"{folder}: a process still listens on {', '.join(sorted(sockets))}")
    elif in_use:
        sweep.kept.append(f"{folder}: the run's nodes are still running")
    else:
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            sweep.removed.append(folder)


def sweep_dead_runs() -> Sweep:
    """Remove the leftovers of every run whose launcher is gone: its segments, run lock,
    node liveness files and socket folder. A live run (its lock held) is never touched, nor,
    in a run whose launcher is gone or whose lock was deleted, anything a process still
    uses: a segment someone maps, a liveness file a node holds, a socket someone listens on.
    """
    sweep = Sweep()
    by_run: dict[str, list[Path]] = {}
    with os.scandir(_shm_dir()) as entries:
        for entry in entries:
            run_id = _run_of(entry.name)
            if run_id is not None:
                by_run.setdefault(run_id, []).append(Path(entry.path))
    folders = _run_folders()
    if not by_run and not folders:
        return sweep
    mapped: dict[tuple[int, int, int], set[int]] | None = None
    listening = _listening_sockets()
    for run_id in sorted(set(by_run) | set(folders)):
        lock = _shm_dir() / lock_name(run_id)
        try:
            fd = _try_lock(lock)
        except FileNotFoundError:
            fd = None  # no lock file: launcher gone (or its lock was deleted: see below)
        except OSError:
            continue  # not ours to judge (permissions, a symlink): leave it alone
        else:
            if fd is None:
                continue  # a launcher holds it: alive
        if mapped is None:
            mapped = _mapped_files()
        try:
            # Holding the lock while removing keeps a racing RunLock.acquire from trusting
            # this file; it retries on a fresh one.
            _sweep_run(run_id, sorted(by_run.get(run_id, [])), folders.get(run_id), mapped,
                       listening, sweep)
            if fd is not None and _unlink(lock):
                sweep.removed.append(lock)
        finally:
            if fd is not None:
                os.close(fd)
    return sweep


def clean_dead_runs() -> list[str]:
    """Names of the shared-memory files :func:`sweep_dead_runs` removed (socket folders
    are removed too, but not listed here)."""
    folder = _shm_dir()
    return [p.name for p in sweep_dead_runs().removed if p.parent == folder]
