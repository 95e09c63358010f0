"""One shared-memory file in /dev/shm, with bounds-checked numpy views.

The producer maps its segments read-write; consumers map them read-only (``PROT_READ``), so
a buggy consumer cannot corrupt a producer's slots: the CPU faults on any write. The one
exception is a consumer whose GPU cannot register read-only memory: it maps read-write so that
``cudaHostRegister`` can pin the pages (see ``transport/registrar.py``).

``multiprocessing.shared_memory`` is not used: on Python 3.11 its resource tracker unlinks
a segment when any process that merely attached to it exits. Plain ``os.open`` + ``mmap``
leaves the name alone until its owner removes it.

Names are ``pinflow-{run_id}.{node_id}.{output_id}.{incarnation}``: ids cannot contain
``.``, so the name splits back unambiguously, and the random incarnation keeps a restarted
producer from ever colliding with (or being confused with) its predecessor's segment.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import mmap
import os
import re
import secrets
import stat
from pathlib import Path

import numpy as np

from pinflow.errors import ClosedError, DescriptorError, TransportError
from pinflow.spec.units import ID_PATTERN, check_id

SHM_DIR_ENV = "PINFLOW_SHM_DIR"
DEFAULT_SHM_DIR = Path("/dev/shm")
PREFIX = "pinflow-"
PAGE = mmap.PAGESIZE

_INCARNATION = re.compile(r"[0-9a-f]+")
_ID = f"({ID_PATTERN.pattern})"
_NAME = re.compile(rf"pinflow-{_ID}\.{_ID}\.{_ID}\.([0-9a-f]+)(\.pinned)?")
PINNED_SUFFIX = ".pinned"
"""Marks pinned pools in their name, so the machine-wide pinned budget can be summed from
/dev/shm alone, across runs, without opening anyone's segment."""
_MADV_POPULATE_WRITE = 23  # Linux >= 5.14; not exported by the mmap module on 3.11


def shm_dir() -> Path:
    """Where segments and run locks live: ``$PINFLOW_SHM_DIR``, else ``/dev/shm``.

    Read on every call, and inherited by every process a run starts, so a whole run (or a
    test session) can be kept in a folder of its own. It must be on tmpfs (a subfolder of
    ``/dev/shm`` is): CUDA refuses long-term pins of disk-backed file mappings.
    """
    return Path(os.environ.get(SHM_DIR_ENV) or DEFAULT_SHM_DIR)


def segment_name(run_id: str, node_id: str, output_id: str, incarnation: str, *,
                 pinned: bool = False) -> str:
    """Name of the segment of one output of one producer incarnation."""
    check_id("run id", run_id)
    check_id("node id", node_id)
    check_id("output id", output_id)
    if not isinstance(incarnation, str) or not _INCARNATION.fullmatch(incarnation):
        raise ValueError(f"invalid incarnation {incarnation!r}: use lowercase hex digits")
    suffix = PINNED_SUFFIX if pinned else ""
    return f"{PREFIX}{run_id}.{node_id}.{output_id}.{incarnation}{suffix}"


def new_incarnation() -> str:
    """Random tag for one producer process, so restarts never reuse a segment name."""
    return secrets.token_hex(4)


def parse_segment_name(name: str) -> tuple[str, str, str, str] | None:
    """``(run_id, node_id, output_id, incarnation)``, or None for anything else.

    The strict pattern is what keeps hostile names ('..', '/', NUL) out of path joins.
    """
    if not isinstance(name, str):
        return None
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    run_id, node_id, output_id, incarnation, _pinned = match.groups()
    return run_id, node_id, output_id, incarnation


def run_glob(run_id: str) -> str:
    """Glob pattern matching every file of one run (segments and its lock)."""
    return f"{PREFIX}{check_id('run id', run_id)}.*"


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mlock.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    libc.mlock.restype = ctypes.c_int
    return libc


def _prefault(mm: mmap.mmap) -> None:
    """Map every page now: a first write to an untouched page costs microseconds later."""
    try:
        mm.madvise(_MADV_POPULATE_WRITE)
    except (OSError, ValueError):
        np.frombuffer(mm, np.uint8)[::PAGE] = 0


class Segment:
    """A mapped /dev/shm file. ``create`` makes it (read-write), ``open`` maps an existing one
    (read-only unless asked otherwise); ``view(..., writable=False)`` hands out views that numpy
    refuses to write through, and over a read-only mapping the CPU refuses too.
    """

    def __init__(self, name: str, path: Path, mm: mmap.mmap, size: int, *,
                 writable: bool = True) -> None:
        self.name = name
        self.path = path
        self.size = size
        self.writable = writable
        """Mapped ``PROT_READ | PROT_WRITE`` (else ``PROT_READ`` only)."""
        self._mm: mmap.mmap | None = mm
        # Views are slices of these two arrays: cheaper than a frombuffer export per view.
        self._rw: np.ndarray | None = np.frombuffer(mm, np.uint8)
        # Over a read-only buffer, so numpy refuses to flip a view's writeable flag back on.
        self._ro_buffer: memoryview | None = memoryview(mm).toreadonly()
        self._ro: np.ndarray | None = np.frombuffer(self._ro_buffer, np.uint8)
        self._address = int(self._rw.__array_interface__["data"][0])
        self._unlinked = False

    @classmethod
    def create(cls, name: str, size: int, *, prefault: bool = True) -> Segment:
        """Create a new segment (fails if the name exists), sized and, by default, prefaulted."""
        if parse_segment_name(name) is None:
            raise ValueError(f"invalid segment name {name!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"segment size must be a positive int, got {size!r}")
        folder = shm_dir()
        if not folder.is_dir():
            raise TransportError(
                f"shared-memory folder {folder} does not exist (create it, or unset "
                f"{SHM_DIR_ENV})"
            )
        path = folder / name
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            os.fchmod(fd, 0o600)  # independent of the umask
            os.ftruncate(fd, size)
            if prefault:
                try:
                    # Reserve tmpfs pages now: a full /dev/shm is an error here, not a SIGBUS
                    # on some later write.
                    os.posix_fallocate(fd, 0, size)
                except OSError as exc:
                    raise TransportError(
                        f"cannot allocate {size} bytes in {folder} for {name}: {exc.strerror}"
                    ) from exc
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        if prefault:
            _prefault(mm)
        return cls(name, path, mm, size)

    @classmethod
    def open(cls, name: str, *, expected_size: int | None = None,
             writable: bool = False) -> Segment:
        """Map an existing segment named by a peer; anything suspicious is a DescriptorError.

        Read-only by default: only a consumer whose GPU cannot register read-only memory asks
        for a read-write mapping.
        """
        if parse_segment_name(name) is None:
            raise DescriptorError(f"refused segment name {name!r}")
        path = shm_dir() / name
        access = os.O_RDWR if writable else os.O_RDONLY
        try:
            fd = os.open(path, access | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            raise DescriptorError(f"segment {name} does not exist") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise DescriptorError(f"segment {name} is not a regular file") from None
            raise DescriptorError(f"cannot open segment {name}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise DescriptorError(f"segment {name} is not a regular file")
            if st.st_uid != os.getuid():
                raise DescriptorError(f"segment {name} belongs to uid {st.st_uid}, not us")
            if st.st_size < 1:
                raise DescriptorError(f"segment {name} is empty")
            if expected_size is not None and st.st_size != expected_size:
                raise DescriptorError(
                    f"segment {name} has {st.st_size} bytes, expected {expected_size}"
                )
            # MAP_POPULATE fills this process's page tables now: the pages are already
            # resident in tmpfs, but faulting them in one by one on first read would add
            # milliseconds to the first frames a consumer reads from each slot.
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            mm = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED | mmap.MAP_POPULATE, prot)
        finally:
            os.close(fd)
        return cls(name, path, mm, st.st_size, writable=writable)

    @property
    def buffer(self) -> mmap.mmap:
        """The mapping itself."""
        if self._mm is None:
            raise ClosedError(f"segment {self.name} is closed")
        return self._mm

    @property
    def readonly_buffer(self) -> memoryview:
        """The mapping as a read-only buffer: ``np.frombuffer`` over it makes a read-only
        array that is the base of every view derived from it."""
        if self._ro_buffer is None:
            raise ClosedError(f"segment {self.name} is closed")
        return self._ro_buffer

    @property
    def closed(self) -> bool:
        return self._mm is None

    def address(self) -> int:
        """Base address of the mapping (for cudaHostRegister and friends)."""
        if self._mm is None:
            raise ClosedError(f"segment {self.name} is closed")
        return self._address

    def whole(self, *, writable: bool) -> np.ndarray:
        """The whole mapping as a 1-D uint8 array (its slices are views; no copy)."""
        base = self._rw if writable else self._ro
        if base is None:
            raise ClosedError(f"segment {self.name} is closed")
        if writable and not self.writable:
            raise ValueError(f"segment {self.name} is mapped read-only")
        return base

    def view(self, offset: int, length: int, *, writable: bool) -> np.ndarray:
        """1-D uint8 view of ``[offset, offset+length)``; no copy."""
        base = self._rw if writable else self._ro
        if base is None:
            raise ClosedError(f"segment {self.name} is closed")
        if writable and not self.writable:
            raise ValueError(f"segment {self.name} is mapped read-only")
        if (
            isinstance(offset, bool)
            or isinstance(length, bool)
            or not isinstance(offset, int)
            or not isinstance(length, int)
            or offset < 0
            or length < 0
            or offset + length > self.size
        ):
            raise DescriptorError(
                f"range offset={offset!r} length={length!r} is outside segment {self.name} "
                f"of {self.size} bytes"
            )
        return base[offset : offset + length]

    def mlock(self) -> bool:
        """Pin the pages in RAM; False when the memlock limit or permissions forbid it."""
        if self._mm is None:
            raise ClosedError(f"segment {self.name} is closed")
        if _libc().mlock(self._address, self.size) == 0:
            return True
        err = ctypes.get_errno()
        if err in (errno.EPERM, errno.ENOMEM, errno.EAGAIN):
            return False
        raise OSError(err, f"mlock of segment {self.name} failed: {os.strerror(err)}")

    def unlink(self) -> None:
        """Remove the name (new opens fail); existing mappings stay valid."""
        if self._unlinked:
            return
        self.path.unlink(missing_ok=True)
        self._unlinked = True

    def close(self) -> None:
        """Unmap now, or, while numpy views still exist, when the last of them is collected."""
        mm, self._mm = self._mm, None
        self._rw = self._ro = self._ro_buffer = None
        if mm is None:
            return
        # Live views hold the mmap object (BufferError); it unmaps when they are collected.
        with contextlib.suppress(BufferError):
            mm.close()

    def __repr__(self) -> str:
        state = "closed" if self._mm is None else f"{self.size} bytes"
        return f"Segment({self.name!r}, {state})"
