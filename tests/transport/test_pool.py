"""Slot pools over real /dev/shm segments, read back in this and in other processes."""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import msgspec
import numpy as np
import pytest

from pinflow.errors import ClosedError, DescriptorError, PayloadError
from pinflow.protocol.messages import SlotRef
from pinflow.transport.pool import MAX_SLOTS, SlotPool, SlotReader
from pinflow.transport.segment import PAGE, Segment, new_incarnation, segment_name


@pytest.fixture
def make_pool(run_id: str) -> Iterator:
    pools: list[SlotPool] = []

    def make(slots: int = 2, slot_bytes: int = 100, output: str = "out") -> SlotPool:
        name = segment_name(run_id, "cam", output, new_incarnation())
        pool = SlotPool(name, slots, slot_bytes, prefault=False)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def fill(pool: SlotPool, payload: bytes, holders: set[str]) -> SlotRef:
    loan = pool.acquire(len(payload), timeout=0)
    assert loan is not None
    loan.array[:] = list(payload)
    return pool.publish(loan, holders)


def test_the_header_describes_the_slots(make_pool) -> None:
    pool = make_pool(slots=3, slot_bytes=PAGE + 1)
    assert pool.total_bytes == PAGE + 3 * 2 * PAGE == pool.segment.size
    header = struct.unpack_from("<8sIIQQ", pool.segment.buffer, 0)
    assert header == (b"PINFLOW1", 1, 3, PAGE + 1, 2 * PAGE)


def test_pool_sizes_are_validated_with_clear_messages(run_id: str) -> None:
    name = segment_name(run_id, "cam", "out", new_incarnation())
    for slots in (0, MAX_SLOTS + 1, True, 2.0):
        with pytest.raises(ValueError, match="slots must be"):
            SlotPool(name, slots, 10)
    for slot_bytes in (0, -1, True):
        with pytest.raises(ValueError, match="slot_bytes must be"):
            SlotPool(name, 1, slot_bytes)


def test_the_largest_pool_table_fits_the_header_page(make_pool) -> None:
    pool = make_pool(slots=MAX_SLOTS, slot_bytes=1)
    refs = [fill(pool, bytes([i]), {"c"}) for i in range(MAX_SLOTS)]
    reader = SlotReader(pool.segment)
    assert sorted(ref.index for ref in refs) == list(range(MAX_SLOTS))
    assert [reader.read(ref).tobytes() for ref in refs] == [bytes([i]) for i in range(MAX_SLOTS)]


def test_a_published_slot_is_reused_after_release_with_the_next_generation(make_pool) -> None:
    pool = make_pool(slots=1)
    first = fill(pool, b"abc", {"c"})
    assert (first.index, first.offset, first.length, first.generation) == (0, PAGE, 3, 1)
    assert pool.acquire(1, timeout=0) is None
    assert pool.release(first.index, first.generation, "c") is True
    second = fill(pool, b"defg", {"c"})
    assert (second.index, second.generation, second.length) == (0, 2, 4)
    stats = pool.stats()
    assert (stats.free, stats.in_use, stats.loaned, stats.acquired_total) == (0, 1, 0, 2)


def test_the_loan_is_a_writable_view_of_exactly_the_requested_bytes(make_pool) -> None:
    pool = make_pool()
    loan = pool.acquire(40, timeout=0)
    assert loan is not None
    assert loan.nbytes == loan.array.nbytes == 40 and loan.array.flags.writeable
    assert loan.array.__array_interface__["data"][0] == pool.segment.address() + PAGE * (
        1 + loan.index
    )
    assert pool.stats().loaned == 1
    pool.cancel(loan)
    assert pool.stats().free == 2
    whole = pool.acquire(pool.slot_bytes, timeout=0)  # the slot's own view, made once
    assert whole is not None and whole.nbytes == whole.array.nbytes == pool.slot_bytes
    assert whole.array.__array_interface__["data"][0] == pool.segment.address() + PAGE * (
        1 + whole.index)
    pool.cancel(whole)


def test_stale_unknown_and_malformed_releases_are_ignored(make_pool) -> None:
    pool = make_pool(slots=1)
    ref = fill(pool, b"a", {"c"})
    assert pool.release(ref.index, ref.generation + 1, "c") is False
    assert pool.release(ref.index, ref.generation, "stranger") is False
    assert pool.release(5, ref.generation, "c") is False
    assert pool.release(-1, ref.generation, "c") is False
    assert pool.release(True, ref.generation, "c") is False  # type: ignore[arg-type]
    assert pool.release("0", ref.generation, "c") is False  # type: ignore[arg-type]
    assert pool.stats().in_use == 1
    assert pool.release(ref.index, ref.generation, "c") is True
    assert pool.release(ref.index, ref.generation, "c") is False


def test_a_slot_is_free_only_when_every_holder_released_it(make_pool) -> None:
    pool = make_pool(slots=1)
    ref = fill(pool, b"a", {"a", "b"})
    assert pool.release(ref.index, ref.generation, "a") is True
    assert pool.acquire(1, timeout=0) is None
    assert pool.release(ref.index, ref.generation, "b") is True
    assert pool.acquire(1, timeout=0) is not None


def test_publishing_to_nobody_frees_the_slot_at_once(make_pool) -> None:
    pool = make_pool(slots=1)
    ref = fill(pool, b"a", set())
    assert ref.generation == 1
    assert pool.stats().free == 1


def test_dropping_a_dead_consumer_frees_the_slots_only_it_held(make_pool) -> None:
    pool = make_pool(slots=3)
    fill(pool, b"a", {"dead"})
    fill(pool, b"b", {"dead", "alive"})
    fill(pool, b"c", {"alive"})
    assert pool.drop_holder("dead") == 1
    assert pool.drop_holder("dead") == 0
    stats = pool.stats()
    assert (stats.free, stats.in_use) == (1, 2)


def test_acquire_times_out_with_none_when_all_slots_are_held_and_counts_it(make_pool) -> None:
    pool = make_pool(slots=1)
    fill(pool, b"a", {"c"})
    start = time.monotonic()
    assert pool.acquire(1, timeout=0.05) is None
    assert time.monotonic() - start >= 0.045
    assert pool.acquire(1, timeout=0) is None
    stats = pool.stats()
    assert (stats.exhausted_waits, stats.timeouts, stats.acquired_total) == (2, 2, 1)


def test_a_waiting_acquire_wakes_when_another_thread_releases(make_pool) -> None:
    pool = make_pool(slots=1)
    ref = fill(pool, b"a", {"c"})
    timer = threading.Timer(0.02, pool.release, (ref.index, ref.generation, "c"))
    timer.start()
    loan = pool.acquire(1, timeout=5)
    timer.join()
    assert loan is not None and loan.index == ref.index
    stats = pool.stats()
    assert (stats.exhausted_waits, stats.timeouts) == (1, 0)


def test_closing_the_pool_wakes_a_waiting_acquire_with_closed_error(make_pool) -> None:
    pool = make_pool(slots=1)
    fill(pool, b"a", {"c"})
    timer = threading.Timer(0.02, pool.close)
    timer.start()
    with pytest.raises(ClosedError):
        pool.acquire(1, timeout=None)
    timer.join()
    assert not pool.segment.path.exists()
    pool.close()


def test_a_payload_larger_than_a_slot_names_the_slot_bytes_setting(make_pool) -> None:
    pool = make_pool(slot_bytes=100)
    with pytest.raises(PayloadError, match=r"101.*100.*slot_bytes") as info:
        pool.acquire(101, timeout=0)
    assert pool.name in str(info.value)
    with pytest.raises(ValueError):
        pool.acquire(-1, timeout=0)


def test_a_loan_can_be_published_or_cancelled_only_once(make_pool) -> None:
    pool = make_pool(slots=2)
    loan = pool.acquire(1, timeout=0)
    assert loan is not None
    pool.cancel(loan)
    with pytest.raises(ValueError):
        pool.publish(loan, {"c"})
    with pytest.raises(ValueError):
        pool.cancel(loan)
    other = make_pool(slots=1, output="other")
    foreign = other.acquire(1, timeout=0)
    with pytest.raises(ValueError):
        pool.publish(foreign, set())


def test_a_reader_returns_the_published_bytes_as_a_read_only_view(make_pool) -> None:
    pool = make_pool()
    ref = fill(pool, b"payload", {"c"})
    reader = SlotReader(Segment.open(ref.segment, expected_size=pool.total_bytes))
    view = reader.read(ref)
    assert view.tobytes() == b"payload"
    assert not view.flags.writeable
    with pytest.raises(ValueError):  # over a read-only buffer: cannot be flipped back
        view.flags.writeable = True
    assert not isinstance(view.base, np.ndarray), "derived views must keep this array alive"
    assert reader.current_generation(ref.index) == 1
    reader.segment.close()


def test_a_reader_refuses_refs_that_do_not_match_the_header(make_pool) -> None:
    pool = make_pool(slots=2, slot_bytes=100)
    ref = fill(pool, b"abc", {"c"})
    reader = SlotReader(pool.segment)
    bad = [
        SlotRef(ref.segment, ref.index, ref.offset, ref.length, ref.generation + 1, ref.lent_to),
        SlotRef(ref.segment, ref.index, ref.offset, ref.length, 0, ref.lent_to),
        SlotRef(ref.segment, 2, PAGE * 3, ref.length, ref.generation, ref.lent_to),
        SlotRef(ref.segment, ref.index, ref.offset + 1, ref.length, ref.generation,
                ref.lent_to),
        SlotRef(ref.segment, ref.index, ref.offset, 101, ref.generation, ref.lent_to),
        SlotRef(ref.segment, ref.index, ref.offset, 2, ref.generation, ref.lent_to),
        SlotRef(segment_name("other", "cam", "out", "0a"), ref.index, ref.offset, 3, 1,
                ref.lent_to),
    ]
    for wrong in bad:
        with pytest.raises(DescriptorError):
            reader.read(wrong)
    unpublished = 1 - ref.index
    with pytest.raises(DescriptorError):
        reader.read(SlotRef(ref.segment, unpublished, PAGE * (1 + unpublished), 0, 0,
                            ref.lent_to))
    assert reader.read(ref).tobytes() == b"abc"


def test_a_ref_goes_stale_as_soon_as_its_slot_is_acquired_again(make_pool) -> None:
    pool = make_pool(slots=1)
    ref = fill(pool, b"abc", {"c"})
    reader = SlotReader(pool.segment)
    pool.release(ref.index, ref.generation, "c")
    loan = pool.acquire(3, timeout=0)
    assert loan is not None
    with pytest.raises(DescriptorError, match="stale"):
        reader.read(ref)
    assert reader.current_generation(ref.index) == 0
    pool.cancel(loan)


def test_a_reader_refuses_segments_without_a_valid_pool_header(run_id: str) -> None:
    plain = Segment.create(segment_name(run_id, "cam", "x", "0a"), 2 * PAGE, prefault=False)
    try:
        with pytest.raises(DescriptorError, match="not a version-1"):
            SlotReader(plain)
        struct.pack_into("<8sIIQQ", plain.buffer, 0, b"PINFLOW1", 1, 2, 100, PAGE)
        with pytest.raises(DescriptorError, match="inconsistent"):
            SlotReader(plain)  # two slots cannot fit in one page after the header
        struct.pack_into("<8sIIQQ", plain.buffer, 0, b"PINFLOW1", 1, 1, 100, 100)
        with pytest.raises(DescriptorError, match="inconsistent"):
            SlotReader(plain)
        struct.pack_into("<8sIIQQ", plain.buffer, 0, b"PINFLOW1", 1, 1, 100, PAGE)
        assert SlotReader(plain).slots == 1
    finally:
        plain.unlink()
        plain.close()


CHILD_READS = """
import msgspec, sys
from pinflow.protocol.messages import SlotRef
from pinflow.transport.pool import SlotReader
from pinflow.transport.segment import Segment
ref = msgspec.json.decode(sys.argv[1], type=SlotRef)
reader = SlotReader(Segment.open(ref.segment))
sys.stdout.write(reader.read(ref).tobytes().hex())
"""


def test_a_reader_in_another_process_reads_the_published_bytes(make_pool) -> None:
    pool = make_pool(slot_bytes=3 * PAGE)
    payload = bytes(range(256)) * (2 * PAGE // 256) + b"tail"
    ref = fill(pool, payload, {"child"})
    done = subprocess.run(
        [sys.executable, "-c", CHILD_READS, msgspec.json.encode(ref).decode()],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert bytes.fromhex(done.stdout) == payload
    assert pool.segment.path.exists()


def test_views_made_ahead_are_fresh_read_only_and_taken_once(make_pool) -> None:
    """The reader makes each slot's next view before it waits (``prepare_views``), so a
    message's read makes no numpy call; every read must still get an array of its own (a
    finalizer on it releases the slot), over the right bytes, never one handed out before."""
    pool = make_pool(slots=2, slot_bytes=100)
    reader = SlotReader(Segment.open(pool.name, expected_size=pool.total_bytes))
    first = fill(pool, b"one", {"c"})
    view = reader.read(first)
    reader.prepare_views()
    assert pool.release(first.index, first.generation, "c")
    second = fill(pool, b"two", {"c"})
    assert second.index == first.index, "the warmest slot again: its view was made ahead"
    ahead = reader.read(second)
    assert ahead is not view and ahead.tobytes() == b"two"
    assert not ahead.flags.writeable and not isinstance(ahead.base, np.ndarray)
    assert pool.release(second.index, second.generation, "c")
    third = fill(pool, b"three", {"c"})  # longer: the view made ahead does not fit, a new one
    again = reader.read(third)
    assert again.tobytes() == b"three" and again is not ahead
    reader.close()
    reader.segment.close()


def _mappings_of(path: str) -> int:
    with open("/proc/self/maps", encoding="utf-8") as maps:
        return sum(line.rstrip().endswith(path) for line in maps)


def test_views_made_ahead_let_the_segment_unmap_once_the_reader_is_closed(make_pool) -> None:
    pool = make_pool(slots=1, slot_bytes=100)
    segment = Segment.open(pool.name, expected_size=pool.total_bytes)
    path = str(segment.path)
    reader = SlotReader(segment)
    ref = fill(pool, b"abc", {"c"})
    view = reader.read(ref)
    reader.prepare_views()
    del view
    assert _mappings_of(path) == 2, "the pool's mapping and the reader's"
    reader.close()
    segment.close()
    assert _mappings_of(path) == 1, "a view made ahead kept the reader's mapping alive"
