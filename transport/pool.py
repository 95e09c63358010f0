"""Fixed-size slots in one shared segment, owned by the producer of one output.

Segment layout (little endian)::

    page 0   header: b"PINFLOW1", u32 version, u32 slot_count, u64 slot_bytes, u64 stride,
             then slot_count entries of (u64 generation, u64 length)
    page 1+  slot i's payload at PAGE + i * stride, stride = slot_bytes rounded up to PAGE

The producer writes a payload, then the slot's (generation, length) entry, then publishes a
``SlotRef`` (``pinflow.protocol.messages``). Consumers check the ref against the table, so a
stale or forged descriptor is refused instead of read. Generation 0 means "never published or being
rewritten" and is never valid in a ref. Which consumers still read a slot is tracked only in
the producer's memory: consumers send releases back, and a dead consumer is dropped whole.
The ref names the consumers the slot was lent to; any other consumer that gets it must not
read it, since the producer writes the slot again once those are done.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pinflow.errors import ClosedError, DescriptorError, PayloadError
from pinflow.protocol.frames import Slot
from pinflow.protocol.messages import SlotRef
from pinflow.protocol.stats import PoolStats
from pinflow.transport.segment import PAGE, Segment

log = logging.getLogger("pinflow.transport")

MAGIC = b"PINFLOW1"
VERSION = 1
MAX_SLOTS = 250

_HEADER = struct.Struct("<8sIIQQ")
_ENTRY = struct.Struct("<QQ")
assert _HEADER.size + MAX_SLOTS * _ENTRY.size <= PAGE


def _stride(slot_bytes: int) -> int:
    return -(-slot_bytes // PAGE) * PAGE


def slot_offset(index: int, stride: int) -> int:
    """Where slot ``index``'s payload starts in its segment (after the header page)."""
    return PAGE + index * stride


def pool_bytes(slots: int, slot_bytes: int) -> int:
    """Size of a pool's segment: the header page, then each slot rounded up to whole pages
    (what the pinned budget must count, and what a consumer checks a mapping against)."""
    return PAGE + _stride(slot_bytes) * slots


def _entry_offset(index: int) -> int:
    return _HEADER.size + index * _ENTRY.size


_INT64_MAX = 2**63 - 1


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _INT64_MAX


class Loan:
    """A slot handed out by ``SlotPool.acquire``: fill ``array``, then publish or cancel.

    Only ``acquire`` makes loans. ``array`` is a writable view of exactly ``nbytes`` bytes of
    the slot; it stays mapped after publishing, but writing through it then races readers.
    """

    __slots__ = ("_pool", "array", "index", "nbytes")

    def __init__(self, pool: SlotPool, index: int, array: np.ndarray, nbytes: int) -> None:
        self._pool = pool
        self.index = index
        self.array = array
        self.nbytes = nbytes

    @property
    def pool(self) -> SlotPool:
        """The pool the slot belongs to (it publishes or cancels the loan)."""
        return self._pool

    def __repr__(self) -> str:
        return f"Loan(pool={self._pool.name!r}, index={self.index}, nbytes={self.nbytes})"


class SlotPool:
    """The producer's slots for one output.

    acquire/publish run on the user's thread, release/drop_holder on network callback
    threads; one Condition guards all state and wakes acquirers when a slot frees up.
    """

    def __init__(self, name: str, slots: int, slot_bytes: int, *, prefault: bool = True,
                 pinned: bool = False) -> None:
        if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"pool {name}: slots must be an int in 1..{MAX_SLOTS}, got {slots!r}")
        if isinstance(slot_bytes, bool) or not isinstance(slot_bytes, int) or slot_bytes < 1:
            raise ValueError(f"pool {name}: slot_bytes must be an int >= 1, got {slot_bytes!r}")
        self.name = name
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.stride = _stride(slot_bytes)
        self.total_bytes = pool_bytes(slots, slot_bytes)
        self.segment = Segment.create(name, self.total_bytes, prefault=prefault)
        _HEADER.pack_into(self.segment.buffer, 0, MAGIC, VERSION, slots, slot_bytes, self.stride)
        self.pinned = pinned
        """Meant for DMA: GPU consumers register it with CUDA once and copy straight from it."""
        self.locked = False
        """mlock succeeded (pinned pools try it; the default 8 MiB memlock limit often says no,
        which costs nothing: the pages are prefaulted and CUDA pins them itself)."""
        if pinned:
            self.locked = self.segment.mlock()
            if not self.locked:
                log.debug("pool %s: mlock refused (RLIMIT_MEMLOCK); pages stay prefaulted", name)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        """Wakes ``acquire`` when a slot frees up; hot paths take ``_lock`` itself."""
        self._buffer: Any = self.segment.buffer
        self._writable: Any = self.segment.whole(writable=True)
        self._slot_arrays: list[np.ndarray] = [
            self._writable[start:start + slot_bytes]
            for start in (self.offset(i) for i in range(slots))]
        """Each slot's writable view, made once: a loan of a whole slot takes it as it is."""
        self._generations = [0] * slots
        self._published_at = [0.0] * slots  # monotonic time of each slot's last publish
        # Most recently freed slot is handed out first: its pages are the warmest.
        self._free = list(range(slots - 1, -1, -1))
        self._loans: dict[int, Loan] = {}
        self._holders: dict[int, set[str]] = {}
        self._acquired_total = 0
        self._exhausted_waits = 0
        self._timeouts = 0
        self._closed = False

    def offset(self, index: int) -> int:
        """Where slot ``index``'s payload starts in the segment."""
        return slot_offset(index, self.stride)

    def _write_entry(self, index: int, generation: int, length: int) -> None:
        _ENTRY.pack_into(self._buffer, _HEADER.size + index * _ENTRY.size, generation, length)

    def acquire(self, nbytes: int, *, timeout: float | None) -> Loan | None:
        """A free slot's writable view of ``nbytes``; None if none frees up within ``timeout``.

        ``timeout=None`` waits forever, ``0`` never waits.
        """
        self._check_size(nbytes)
        with self._lock:
            self._check_open()
            if not self._free:
                self._exhausted_waits += 1
                if timeout is None or timeout > 0:
                    self._cond.wait_for(lambda: self._free or self._closed, timeout)
                self._check_open()
                if not self._free:
                    self._timeouts += 1
                    return None
            return self._lend_free(nbytes)

    def try_acquire(self, nbytes: int) -> Loan | None:
        """A free slot's writable view of ``nbytes``, or None at once (nothing counted: a
        caller that waits in its own way counts with :meth:`note_exhausted`). The
        producer's path for every message: written to touch as little as it can."""
        if type(nbytes) is not int or not 0 <= nbytes <= self.slot_bytes:
            self._check_size(nbytes)
        with self._lock:
            if self._closed:
                raise ClosedError(f"pool {self.name} is closed")
            if not self._free:
                return None
            return self._lend_free(nbytes)

    def note_exhausted(self, *, timed_out: bool) -> None:
        """Count one acquire that found no free slot (and gave up, if ``timed_out``)."""
        with self._lock:
            self._exhausted_waits += 1
            self._timeouts += timed_out

    def _check_size(self, nbytes: int) -> None:
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
            raise ValueError(f"pool {self.name}: nbytes must be an int >= 0, got {nbytes!r}")
        if nbytes > self.slot_bytes:
            raise PayloadError(
                f"output pool {self.name}: a {nbytes}-byte payload does not fit its "
                f"{self.slot_bytes}-byte slots; raise `slot_bytes` for this output in the "
                "dataflow YAML"
            )

    def _lend_free(self, nbytes: int) -> Loan:
        """Take the warmest free slot (caller holds the lock and saw one)."""
        index = self._free.pop()
        # Generation 0 in the table while the payload is rewritten: any stale ref fails.
        self._write_entry(index, 0, 0)
        array = self._slot_arrays[index]
        if nbytes != self.slot_bytes:
            array = array[:nbytes]
        loan = Loan(self, index, array, nbytes)
        self._loans[index] = loan
        self._acquired_total += 1
        return loan

    def _take_loan(self, loan: Loan) -> None:
        if loan._pool is not self or self._loans.get(loan.index) is not loan:
            raise ValueError(f"{loan!r} is not an outstanding loan of pool {self.name}")
        del self._loans[loan.index]

    def publish(self, loan: Loan, holders: set[str] | frozenset[str]) -> SlotRef:
        """Stamp the written slot and lend it to ``holders``, who must each release it.

        The ref names them: nobody else may read the slot. With no holders nobody will read
        it, so it is free again at once.
        """
        generation = self.stamp(loan, holders)
        return SlotRef(self.name, loan.index, self.offset(loan.index), loan.nbytes, generation,
                       frozenset(holders))

    def stamp(self, loan: Loan, holders: set[str] | frozenset[str]) -> int:
        """:meth:`publish` without building the ref: the new generation of the slot."""
        with self._lock:
            if self._closed:
                raise ClosedError(f"pool {self.name} is closed")
            index = loan.index
            if loan._pool is not self or self._loans.get(index) is not loan:
                raise ValueError(f"{loan!r} is not an outstanding loan of pool {self.name}")
            del self._loans[index]
            generation = self._generations[index] + 1
            self._generations[index] = generation
            self._published_at[index] = time.monotonic()
            self._write_entry(index, generation, loan.nbytes)
            if holders:
                self._holders[index] = set(holders)
            else:
                self._free.append(index)
                self._cond.notify()
        return generation

    def cancel(self, loan: Loan) -> None:
        """Give back a loan that will not be published."""
        with self._lock:
            if self._closed:
                return
            self._take_loan(loan)
            self._free.append(loan.index)
            self._cond.notify()

    def release(self, index: int, generation: int, holder: str) -> bool:
        """``holder`` is done with the slot; True if it was holding that generation.

        Stale, unknown or malformed releases come from the network and are ignored. A release
        only ever drops ``holder`` itself: whoever else holds the slot keeps it held, so the
        caller must have proven that the release comes from ``holder`` (``OutputChannel``
        checks its MAC).
        """
        if not (_is_count(index) and _is_count(generation) and isinstance(holder, str)):
            return False
        with self._lock:
            holders = self._holders.get(index)
            if holders is None or holder not in holders or generation != self._generations[index]:
                return False
            holders.discard(holder)
            if not holders:
                del self._holders[index]
                self._free.append(index)
                self._cond.notify()
            return True

    def drop_holder(self, holder: str) -> int:
        """``holder``'s process is gone (never merely unreachable: see
        ``pinflow.transport.liveness``): release everything it held; returns how many
        slots became free."""
        return self._take_back(holder, lambda index: True)

    def resync(self, holder: str, held: set[tuple[int, int]], published_before: float) -> int:
        """``holder`` says it holds only the ``(index, generation)`` pairs in ``held``: take
        back every other slot lent to it before ``published_before`` (the moment its link
        was lost: it released them and the release was lost, or never got the descriptor).
        Returns how many slots came free."""
        return self._take_back(holder, lambda index: (
            (index, self._generations[index]) not in held
            and self._published_at[index] < published_before))

    def _take_back(self, holder: str, which: Callable[[int], bool]) -> int:
        """Drop ``holder`` from every slot it holds for which ``which(index)`` says so;
        returns how many slots came free (called with the lock free; takes it)."""
        freed = 0
        with self._lock:
            for index in list(self._holders):
                holders = self._holders[index]
                if holder not in holders or not which(index):
                    continue
                holders.discard(holder)
                if not holders:
                    del self._holders[index]
                    self._free.append(index)
                    freed += 1
            if freed:
                self._cond.notify(freed)
        return freed

    def idle(self) -> bool:
        """No slot is loaned out or held by a consumer."""
        with self._lock:
            return not self._holders and not self._loans

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(
                slots=self.slots,
                slot_bytes=self.slot_bytes,
                free=len(self._free),
                in_use=len(self._holders),
                loaned=len(self._loans),
                acquired_total=self._acquired_total,
                exhausted_waits=self._exhausted_waits,
                timeouts=self._timeouts,
                held_by=self._held_by(),
            )

    def held_by(self) -> dict[str, int]:
        """Slots each consumer holds right now (consumer node id -> slots)."""
        with self._lock:
            return self._held_by()

    def _held_by(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for holders in self._holders.values():
            for holder in holders:
                counts[holder] = counts.get(holder, 0) + 1
        return dict(sorted(counts.items()))

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"pool {self.name} is closed")

    def close(self) -> None:
        """Remove and unmap the segment; blocked acquirers get ClosedError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            # drop our views, or the mapping could not be closed
            self._buffer = self._writable = None
            self._slot_arrays = []
        self.segment.unlink()
        self.segment.close()


class SlotReader:
    """Consumer side: verify a SlotRef against a mapped segment and return a read-only view."""

    def __init__(self, segment: Segment) -> None:
        if segment.size < PAGE:
            raise DescriptorError(f"segment {segment.name} is too small for a pool header")
        magic, version, slots, slot_bytes, stride = _HEADER.unpack_from(segment.buffer, 0)
        if magic != MAGIC or version != VERSION:
            raise DescriptorError(
                f"segment {segment.name} is not a version-{VERSION} pinflow pool "
                f"(magic {magic!r}, version {version})"
            )
        if (
            not 1 <= slots <= MAX_SLOTS
            or slot_bytes < 1
            or stride != _stride(slot_bytes)
            or segment.size != pool_bytes(slots, slot_bytes)
        ):
            raise DescriptorError(
                f"segment {segment.name} has an inconsistent pool header: {slots} slots of "
                f"{slot_bytes} bytes, stride {stride}, but {segment.size} bytes mapped"
            )
        self.segment = segment
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.stride = stride
        self._spares: dict[int, np.ndarray] = {}
        """Per slot, a fresh view not handed out yet (:meth:`prepare_views`)."""
        self._read: list[tuple[int, int]] = []
        """(index, length) of the slots read since the last :meth:`prepare_views`."""

    def current_generation(self, index: int) -> int:
        """Generation the producer last stamped on slot ``index`` (0: never or being written)."""
        if not 0 <= index < self.slots:
            raise DescriptorError(f"slot index {index} outside 0..{self.slots - 1}")
        generation: int = _ENTRY.unpack_from(self.segment.buffer, _entry_offset(index))[0]
        return generation

    def read(self, ref: SlotRef | Slot) -> np.ndarray:
        """Read-only view of the slot's bytes (a new array object: a finalizer on it is this
        read's), after checking ``ref`` against the header."""
        if ref.segment != self.segment.name:
            raise DescriptorError(
                f"slot reference names segment {ref.segment}, not {self.segment.name}"
            )
        index = ref.index
        if not 0 <= index < self.slots:
            raise DescriptorError(f"slot index {index} outside 0..{self.slots - 1}")
        if ref.offset != slot_offset(index, self.stride):
            raise DescriptorError(f"slot {index} does not start at offset {ref.offset}")
        if not 0 <= ref.length <= self.slot_bytes:
            raise DescriptorError(
                f"slot length {ref.length} outside 0..{self.slot_bytes} in {self.segment.name}"
            )
        segment = self.segment
        buffer = segment.readonly_buffer
        generation, length = _ENTRY.unpack_from(buffer, _HEADER.size + index * _ENTRY.size)
        if ref.generation == 0 or ref.generation != generation or ref.length != length:
            raise DescriptorError(
                f"stale slot reference to {segment.name}[{index}]: generation "
                f"{ref.generation}/{ref.length} bytes, header has {generation}/{length}"
            )
        if len(self._read) < self.slots:  # bounded when nobody prepares (the mesh path)
            self._read.append((index, length))
        spare = self._spares.pop(index, None)  # one atomic step: no view is handed out twice
        if spare is not None and len(spare) == length:
            return spare
        return np.frombuffer(buffer, dtype=np.uint8, count=length, offset=ref.offset)

    def prepare_views(self) -> None:
        """Make a fresh view for each slot read since the last call, for its next read: a
        numpy call costs tens of microseconds on a message's path after the reader slept
        (its caches went cold); made here, right after the last message and before the
        reader waits again, it is off that path.

        Each view is over the mapping itself, not a slice of a segment-wide array: numpy
        makes every view derived from it keep *it* alive (its base is not an array), so the
        slot is released only once the last view of it is gone. Read-only, as the buffer
        is."""
        read, self._read = self._read, []
        if not read:
            return
        try:
            buffer = self.segment.readonly_buffer
        except ClosedError:
            return
        for index, length in read:
            self._spares[index] = np.frombuffer(buffer, dtype=np.uint8, count=length,
                                                offset=slot_offset(index, self.stride))

    def close(self) -> None:
        """Drop the spare views (before the segment is closed: they would keep it mapped)."""
        self._spares.clear()
        self._read = []
