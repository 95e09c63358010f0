"""What an arm's processes use while it runs: CPU time and RSS per role (psutil), and the
shared-memory files they map (from ``/proc/PID/maps``).

Shared memory is counted by what the arm's own processes map, never by what lies in the
folder: another run on the machine (a soak, a second benchmark) has its pools there too.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil

from pinflow.transport import segment

ZENOH_SHM_DIR = Path("/dev/shm")
"""Where zenoh's shared-memory backend keeps its ``*.zenoh`` files."""
ZENOH_SUFFIX = ".zenoh"


def mapped_files(pid: int) -> set[Path]:
    """The files process ``pid`` maps now; empty once it is gone."""
    try:
        text = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return set()
    found = set()
    for line in text.splitlines():
        fields = line.split(maxsplit=5)  # address perms offset dev inode path
        if len(fields) == 6 and fields[5].startswith("/"):
            found.add(Path(fields[5]))
    return found


def is_pinned_pool(path: Path, folder: Path) -> bool:
    """``folder``: the shared-memory folder, resolved (maps show real paths)."""
    return (path.parent == folder and path.name.startswith(segment.PREFIX)
            and path.name.endswith(segment.PINNED_SUFFIX))


def is_zenoh_file(path: Path) -> bool:
    return path.parent == ZENOH_SHM_DIR and path.name.endswith(ZENOH_SUFFIX)


class Sampler:
    """Samples the process trees under ``roots`` every ``interval_s`` in a thread of its own,
    from ``with`` until the block ends. ``roles`` maps a command-line fragment to the role
    its processes count under (producer, consumer, gateway); the rest are not counted."""

    def __init__(self, roots: list[int], roles: dict[str, str], interval_s: float = 0.2
                 ) -> None:
        self.roots, self.roles, self.interval_s = roots, roles, interval_s
        self.cpu: dict[str, float] = {}
        """``role:pid`` -> CPU seconds (user + system) so far."""
        self.history: list[tuple[float, dict[str, float]]] = []
        """(wall time, ``cpu`` then), one per sample."""
        self.rss_history: list[tuple[float, dict[str, int]]] = []
        """(wall time, role -> RSS of its processes together), one per sample."""
        self.rss: dict[str, int] = {}
        """Role -> the largest RSS one of its processes had."""
        self.pinned_bytes = 0
        """The most pinned-pool bytes the processes mapped at one time."""
        self.pinned_first: int | None = None
        self.pinned_last = 0
        self.zenoh_files: set[Path] = set()
        """zenoh shared-memory files the processes mapped (theirs to clean up)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _role(self, proc: psutil.Process) -> str | None:
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            return None
        return next((role for frag, role in self.roles.items() if frag in cmd), None)

    def _run(self) -> None:
        roots = []
        for pid in self.roots:
            try:
                roots.append(psutil.Process(pid))
            except psutil.Error:
                continue
        while not self._stop.is_set():
            self._sample(roots)
            self._stop.wait(self.interval_s)

    def _sample(self, roots: list[psutil.Process]) -> None:
        procs = []
        for root in roots:
            try:
                procs += [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
        rss_now: dict[str, int] = {}
        mapped: set[Path] = set()
        for proc in procs:
            mapped |= mapped_files(proc.pid)
            role = self._role(proc)
            if role is None:
                continue
            try:
                times, mem = proc.cpu_times(), proc.memory_info().rss
            except psutil.Error:
                continue
            self.cpu[f"{role}:{proc.pid}"] = times.user + times.system
            self.rss[role] = max(self.rss.get(role, 0), mem)
            rss_now[role] = rss_now.get(role, 0) + mem
        folder = segment.shm_dir().resolve()
        pinned = sum(_size(path) for path in mapped if is_pinned_pool(path, folder))
        self.pinned_bytes = max(self.pinned_bytes, pinned)
        if pinned:
            self.pinned_first = pinned if self.pinned_first is None else self.pinned_first
            self.pinned_last = pinned
        self.zenoh_files |= {path for path in mapped if is_zenoh_file(path)}
        now = time.time()
        self.history.append((now, dict(self.cpu)))
        self.rss_history.append((now, rss_now))

    def cpu_pct(self, role: str, start: float, end: float) -> float | None:
        """CPU use of ``role`` between wall times ``start`` and ``end`` (the streaming
        window, so process start-up and imports do not count), in % of one core."""
        window = [(t, cpu) for t, cpu in self.history if start <= t <= end]
        if len(window) < 2:
            return None
        (t0, first), (t1, last) = window[0], window[-1]
        used = sum(v - first.get(k, 0.0) for k, v in last.items() if k.startswith(role + ":"))
        return 100 * used / (t1 - t0)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # unlinked since (a replaced pool): its mapping shows " (deleted)"
        return 0


def remove_orphan_zenoh_files(candidates: set[Path]) -> list[Path]:
    """zenoh's shared-memory backend can leave its files behind after its processes exit.
    Remove those of ``candidates`` (what the arm's processes mapped) that no live process
    maps any more; files the arm never mapped are never touched. Returns what was removed."""
    candidates = {path for path in candidates if path.exists()}
    if not candidates:
        return []
    still_mapped: set[Path] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        still_mapped |= mapped_files(int(maps.parent.name)) & candidates
    removed = sorted(candidates - still_mapped)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
