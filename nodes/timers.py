"""Timer inputs (``pinflow/timer/UNIT/N`` or dora's ``dora/timer/UNIT/N``), kept by the
kernel.

A timer used to be a thread of its own that slept until each tick and pushed it into the
node's queues, waking the node's thread through a pipe: on the 2-vCPU development VM that
thread took ~180-210 µs of CPU per tick at 30 Hz, beside ~290 µs on the node's own thread
for the tick and the frame it sent (per thread, from ``/proc/<pid>/task/*/schedstat``).
Now each timer is a ``timerfd`` (Linux), armed once on a fixed grid
(start + k * period, in absolute ``CLOCK_MONOTONIC`` time, so lateness never accumulates as
drift) and watched by the node's own thread where it already waits for its links: a tick
wakes it straight from ``poll``, and reading the timer says how many ticks came due since
it was last read. No thread wakes for a timer.

``timerfd_create``/``timerfd_settime`` come from the C library through ctypes: ``os`` has
them only from Python 3.13.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import time

CLOCK_MONOTONIC = 1
TFD_TIMER_ABSTIME = 1
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = os.O_CLOEXEC
_NS = 1_000_000_000


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Itimerspec(ctypes.Structure):
    _fields_ = (("it_interval", _Timespec), ("it_value", _Timespec))


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library's timerfd calls, bound on first use: importing pinflow needs none, and
    where the C library has no timerfd (not Linux) a timer input says so when it starts."""
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except AttributeError:
        raise OSError(f"timer inputs need Linux's timerfd, which this C library "
                      f"({sys.platform}) does not have") from None
    create.argtypes, create.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settime.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec),
                        ctypes.POINTER(_Itimerspec))
    settime.restype = ctypes.c_int
    return libc


def _timespec(ns: int) -> _Timespec:
    return _Timespec(ns // _NS, ns % _NS)


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


class TickTimer:
    """Ticks every ``period_s`` on the grid ``start + k * period`` (k = 1, 2, ...; the first
    tick one period after the timer is made). ``fileno()`` becomes readable when a tick is
    due; :meth:`fire` reads how many came due since the last read and keeps them for
    :meth:`take`. Not thread-safe: the node's reading thread owns it."""

    def __init__(self, name: str, period_s: float) -> None:
        self.name = name
        self.period_ns = max(1, int(period_s * 1e9))
        libc = _libc()
        self._fd = _check(libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC),
                          f"timer {name}: timerfd_create")
        try:
            self._start = time.monotonic_ns()
            self._wall_offset = time.time_ns() - self._start
            spec = _Itimerspec(_timespec(self.period_ns), _timespec(self._start + self.period_ns))
            _check(libc.timerfd_settime(self._fd, TFD_TIMER_ABSTIME, ctypes.byref(spec), None),
                   f"timer {name}: timerfd_settime")
        except BaseException:
            os.close(self._fd)
            raise
        self._taken = 0
        """Grid index of the last tick handed out by :meth:`take`."""
        self._due = 0
        """Ticks read from the kernel that :meth:`take` has not handed out yet."""

    def fileno(self) -> int:
        return self._fd

    def fire(self) -> None:
        """The timer's descriptor is readable: note the ticks that came due (never blocks)."""
        try:
            raw = os.read(self._fd, 8)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # closed meanwhile: nothing more will come
            return
        if len(raw) == 8:
            self._due += int.from_bytes(raw, sys.byteorder)

    def take(self) -> tuple[int, int]:
        """``(k, n)``: the ticks k, k + 1, ..., k + n - 1 came due and were not taken yet."""
        first, count = self._taken + 1, self._due
        self._taken += count
        self._due = 0
        return first, count

    def wall_ns(self, k: int) -> int:
        """Tick ``k``'s scheduled time, in ns since the epoch."""
        return self._start + k * self.period_ns + self._wall_offset

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
