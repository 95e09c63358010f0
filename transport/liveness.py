"""Is a peer dead, or only silent? A liveness test that a paused process cannot fool.

zenoh declares a peer lost when its lease expires: 10 s without a word, which a debugger
breakpoint, swap or a paused VM easily exceeds. Reclaiming a consumer's slots then would
overwrite frames it still holds. So every node process holds an exclusive ``flock`` on a
file of its own, ``pinflow-<run>.<node>.alive`` in the run's shared-memory folder, for its
whole life. The kernel drops the lock when the process dies, however it dies, and never
while it is merely stopped. A peer whose token vanished is treated as gone only once that
lock is free (or its file is missing); until then it is just unreachable.

Why a lock and not pid + start time: the lock needs no ``/proc`` (hidden by ``hidepid``,
or another pid namespace sharing the tmpfs), cannot be confused by pid reuse, and is the
same mechanism the run lock uses (:mod:`pinflow.transport.cleanup`), so ``pinflow clean``
judges both the same way. Each process creates a fresh file (a new inode), so a checker
holding the predecessor's file never mistakes a restarted node for the old process.

The name has three dot-separated parts; segment names have four or five and run locks
two, so no pattern of one matches another.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pinflow.errors import TransportError
from pinflow.spec.units import ID_PATTERN, check_id
from pinflow.transport import segment as _segment

log = logging.getLogger("pinflow.transport")

ALIVE_SUFFIX = ".alive"
_ALIVE = re.compile(rf"pinflow-({ID_PATTERN.pattern})\.({ID_PATTERN.pattern})\.alive")
POLL_S = 0.2
"""How often an unreachable peer's lock is probed."""


def alive_name(run_id: str, node_id: str) -> str:
    """File name of the lock a node process of ``run_id`` holds while it lives."""
    check_id("run id", run_id)
    check_id("node id", node_id)
    return f"{_segment.PREFIX}{run_id}.{node_id}{ALIVE_SUFFIX}"


def parse_alive_name(name: str) -> tuple[str, str] | None:
    """``(run_id, node_id)`` of a node's liveness file, or None for anything else."""
    match = _ALIVE.fullmatch(name)
    return (match.group(1), match.group(2)) if match else None


def _probe_free(fd: int) -> bool:
    """True if nobody holds the lock on ``fd``'s file (its process is gone).

    A shared lock, so two peers probing at once do not mistake each other for the holder.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


def lock_is_held(path: Path) -> bool:
    """True while some process holds ``path`` locked; False if it is free or missing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return not _probe_free(fd)
    finally:
        os.close(fd)


def lock_name(run_id: str) -> str:
    """File name of the lock a run's launcher holds for the whole run."""
    check_id("run id", run_id)
    return f"{_segment.PREFIX}{run_id}.lock"


def run_is_live(run_id: str) -> bool:
    """True while a launcher holds the run's lock. A stopped (SIGSTOP) launcher still holds
    it; only its death drops it."""
    return lock_is_held(_segment.shm_dir() / lock_name(run_id))


class NodeLock:
    """The lock a node process holds for its whole life (see the module docstring)."""

    def __init__(self, run_id: str, node_id: str) -> None:
        self.path = _segment.shm_dir() / alive_name(run_id, node_id)
        self.node_id = node_id
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock on a fresh file; TransportError if the node already runs."""
        if self._fd is not None:
            return
        if lock_is_held(self.path):
            raise TransportError(
                f"node {self.node_id!r} is already running in this run ({self.path} is locked)")
        # A predecessor that died left its file: replace it, so whoever still watches the
        # old inode sees it free while we hold a new one.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise TransportError(f"cannot create {self.path}: {exc.strerror}") from None
        try:
            # Blocking: a peer's probe holds a shared lock for an instant at most.
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Remove the file and drop the lock; idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_ino == self.path.stat(follow_symlinks=False).st_ino:
                self.path.unlink()
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None


class PeerWatch:
    """Turns "the peer's token vanished" into "the peer's process is gone", pause-proof.

    ``lost(node)`` (token deleted) opens the peer's liveness file and probes its lock every
    ``POLL_S``; once it is free, or the file is missing, ``on_gone(node)`` runs once, on the
    watch's thread. ``back(node)`` (token declared again) settles a pending peer at once:
    free lock means the old process died and a new one is back, so ``on_gone`` runs before
    the caller starts addressing the newcomer; a held lock means the same process resumed:
    it keeps what it holds, and ``on_resumed(node, lost_at)`` runs, ``lost_at`` being the
    ``time.monotonic()`` of the loss (what crossed the dead link in either direction may be
    lost: the caller settles that). ``gone(node)`` (the launcher
    says so) runs ``on_gone`` at once.
    """

    def __init__(self, run_id: str, on_gone: Callable[[str], None], *,
                 on_resumed: Callable[[str, float], None] | None = None,
                 name: str = "pinflow-peerwatch") -> None:
        self._run_id = run_id
        self._on_gone = on_gone
        self._on_resumed = on_resumed
        self._name = name
        self._cond = threading.Condition()
        self._pending: dict[str, int | None] = {}
        self._lost_at: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._closed = False

    def lost(self, node_id: str) -> None:
        """``node_id``'s token vanished: watch its process."""
        fd: int | None
        try:
            path = _segment.shm_dir() / alive_name(self._run_id, node_id)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (OSError, ValueError):
            fd = None  # no liveness file: gone (or never a process of this host)
        with self._cond:
            if self._closed or node_id in self._pending:
                if fd is not None:
                    os.close(fd)
                return
            self._pending[node_id] = fd
            self._lost_at[node_id] = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def back(self, node_id: str) -> None:
        """``node_id``'s token is back: if its old process died meanwhile, say so first."""
        self._settle(node_id, force=False)

    def gone(self, node_id: str) -> None:
        """The launcher declared ``node_id`` gone for good."""
        self._settle(node_id, force=True)

    def unreachable(self) -> set[str]:
        """Peers whose token vanished while their process still lives."""
        with self._cond:
            return set(self._pending)

    def _settle(self, node_id: str, *, force: bool) -> None:
        with self._cond:
            if node_id not in self._pending:
                return
            fd = self._pending[node_id]
            if force or fd is None or _probe_free(fd):
                self._finish(node_id)
                return
            # The same process resumed: it keeps everything it holds.
            del self._pending[node_id]
            lost_at = self._lost_at.pop(node_id)
            os.close(fd)
        if self._on_resumed is not None:
            self._on_resumed(node_id, lost_at)

    def _finish(self, node_id: str) -> None:
        """Forget ``node_id`` and report it gone (caller holds the condition)."""
        fd = self._pending.pop(node_id)
        self._lost_at.pop(node_id, None)
        if fd is not None:
            os.close(fd)
        try:
            self._on_gone(node_id)
        except Exception:  # a callback bug must not stop the watch of other peers
            log.exception("peer watch: handling the loss of %s failed", node_id)

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                for node_id, fd in list(self._pending.items()):
                    if fd is None or _probe_free(fd):
                        self._finish(node_id)
                self._cond.wait(POLL_S if self._pending else None)

    def close(self) -> None:
        """Stop watching; peers still pending are left as they are."""
        with self._cond:
            self._closed = True
            for fd in self._pending.values():
                if fd is not None:
                    os.close(fd)
            self._pending.clear()
            self._lost_at.clear()
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)


class LauncherWatch:
    """Decides whether a vanished launcher token means the launcher is gone.

    The launcher holds its run lock for its whole life, so "nobody holds the run lock" is
    the pause-proof test (a stopped launcher still holds it). ``seen(False)`` checks at once
    and then every ``POLL_S`` until the token is back (``seen(True)``) or ``close()``;
    ``on_gone()`` runs once the lock is found free.
    """

    def __init__(self, run_id: str, on_gone: Callable[[], None], *,
                 name: str = "pinflow-launcher-watch") -> None:
        self._run_id = run_id
        self._on_gone = on_gone
        self._name = name
        self._cond = threading.Condition()
        self._present = True
        self._closed = False
        self._thread: threading.Thread | None = None

    def seen(self, present: bool) -> None:
        """The launcher's token was declared (True) or vanished (False)."""
        with self._cond:
            self._present = present
            self._cond.notify_all()
            if present or self._closed or self._thread is not None:
                return
        if self._check():
            return
        with self._cond:
            if self._thread is None and not self._present and not self._closed:
                self._thread = threading.Thread(target=self._run, name=self._name,
                                                daemon=True)
                self._thread.start()

    def _check(self) -> bool:
        """True (and ``on_gone`` called) if the run lock is free."""
        if run_is_live(self._run_id):
            return False
        with self._cond:
            if self._closed:
                return True
            self._closed = True  # report once
        self._on_gone()
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait(POLL_S)
                if self._present or self._closed:
                    self._thread = None
                    return
            if self._check():
                with self._cond:
                    self._thread = None
                return

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
