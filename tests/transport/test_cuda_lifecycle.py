"""The GPU path's lifecycle on the CUDA stand-in (pinflow.testing), with a real zenoh session,
real shared-memory pools and real slot releases: registration once per segment, copies from
the slot itself, slots held until their copy ran, unregister after the last copy and before
unmap, fallbacks that are counted and said once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pinflow.errors import PinnedBudgetExceeded
from pinflow.testing import StandinCuda
from pinflow.testing.rig import Rig, make_rig
from pinflow.transport import budget, codec
from pinflow.transport.gpu_runtime import HOST_REGISTER_PORTABLE, HOST_REGISTER_READ_ONLY
from pinflow.transport.pool import pool_bytes
from pinflow.transport.segment import PAGE

FRAME = (32, 64, 4)  # 8 KiB: above the shared-memory threshold, cheap to send 10,000 times


@pytest.fixture
def gpu() -> Iterator[StandinCuda]:
    runtime = StandinCuda()
    yield runtime
    runtime.close()
    runtime.check()


@pytest.fixture
def rig(tmp_path: Path, gpu: StandinCuda) -> Iterator[Rig]:
    with make_rig(tmp_path, gpu) as made:
        yield made


def _frame(i: int) -> np.ndarray:
    return np.full(FRAME, i % 251, dtype=np.uint8)


def _wait(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def _segment_registrations(gpu: StandinCuda, rig: Rig) -> list[tuple[int, int, int]]:
    mapped = {m.segment.address(): m.segment.size for m in rig.receiver.mappings()}
    return [(base, size, flags) for base, (size, flags) in gpu.registered.items()
            if mapped.get(base) == size]


def test_one_registration_per_segment_over_10000_messages(rig: Rig, gpu: StandinCuda):
    for i in range(10_000):
        rig.send(_frame(i))
        view, mapping, layout = rig.receive()
        device = rig.copy(view, mapping, layout)
        del view
        if i % 997 == 0:
            assert np.all(device.cpu() == i % 251)
    stats = rig.copier.stats
    assert stats.registrations == 1 and stats.copies == 10_000 and stats.pageable_copies == 0
    assert len(_segment_registrations(gpu, rig)) == 1, "the driver holds one registration"
    assert gpu.pinned_copies == 10_000 and gpu.pageable_copies == 0
    assert rig.channel.stats.pools_created == 1 and rig.receiver.segments_mapped == 1


def test_registration_starts_when_the_segment_is_mapped_and_covers_it_whole(
        rig: Rig, gpu: StandinCuda):
    rig.send(_frame(7))
    view, mapping, _layout = rig.receive()
    assert _wait(lambda: len(_segment_registrations(gpu, rig)) == 1), \
        "registered without any copy asking for it"
    (base, size, flags), = _segment_registrations(gpu, rig)
    assert (base, size) == (mapping.segment.address(), mapping.segment.size)
    assert flags == HOST_REGISTER_PORTABLE | HOST_REGISTER_READ_ONLY, \
        "Portable (every context) and ReadOnly (the consumer maps PROT_READ)"
    assert gpu.is_registered(view)


def test_copy_reads_the_slot_itself_not_a_staging_copy(rig: Rig, gpu: StandinCuda):
    rig.send(_frame(7))
    view, mapping, layout = rig.receive()
    device = rig.copy(view, mapping, layout)
    assert gpu.is_registered(view), "the DMA source is the registered slot"
    assert gpu.pinned_copies == 1 and gpu.pageable_copies == 0
    assert np.all(device.cpu() == 7)


def test_slot_returns_to_producer_only_after_its_copy_ran(tmp_path: Path):
    gpu = StandinCuda()
    with make_rig(tmp_path, gpu) as rig:
        dma_busy = threading.Event()
        gpu.launch(gpu.copy_stream(0), lambda: dma_busy.wait(10))  # the DMA waits for us
        rig.send(_frame(1))
        view, mapping, layout = rig.receive()
        device = rig.copy(view, mapping, layout)
        del view
        time.sleep(0.2)  # time for a (wrong) early release to reach the producer
        assert rig.held_slots() == 1, "slot must stay held while its DMA may still read it"
        dma_busy.set()
        assert _wait(lambda: rig.held_slots() == 0), "released once the copy completed"
        assert np.all(device.cpu() == 1)
    gpu.close()
    gpu.check()


def test_unregister_happens_after_the_last_copy_and_before_unmap(tmp_path: Path):
    gpu = StandinCuda(copy_delay_s=0.02)
    with make_rig(tmp_path, gpu) as rig:
        devices = []
        for i in range(5):
            rig.send(_frame(i))
            view, mapping, layout = rig.receive()
            devices.append(rig.copy(view, mapping, layout))
            del view
        base = mapping.segment.address()
        rig.receiver.close()  # drops mappings: the copier must unregister first
        assert base not in gpu.registered
        assert rig.copier.stats.unregistrations == 1
        assert [int(d.cpu()[0, 0, 0]) for d in devices] == [0, 1, 2, 3, 4]
    gpu.close()
    # The stand-in records an unregister with a copy still queued, or of unmapped memory.
    gpu.check()


def test_registration_failure_falls_back_to_pageable_copies_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    gpu = StandinCuda(host_register=False)
    caplog.set_level(logging.WARNING, logger="pinflow.cuda")
    with make_rig(tmp_path, gpu) as rig:
        devices = []
        for i in range(3):
            rig.send(_frame(i))
            view, mapping, layout = rig.receive()
            devices.append(rig.copy(view, mapping, layout))
            del view
        assert [int(d.cpu()[0, 0, 0]) for d in devices] == [0, 1, 2]
        stats = rig.copier.stats
        assert stats.registration_failures == 1 and stats.pageable_copies == 3
        assert stats.copies == 0 and gpu.pinned_copies == 0
        warnings = [r.getMessage() for r in caplog.records]
        assert sum("cannot register" in w for w in warnings) == 1, warnings
        assert "cudaErrorNotSupported" in warnings[0]
    gpu.close()
    gpu.check()


def test_unpinned_pool_is_copied_as_pageable_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    gpu = StandinCuda()
    caplog.set_level(logging.WARNING, logger="pinflow.cuda")
    with make_rig(tmp_path, gpu, pinned=False) as rig:
        for i in range(3):
            assert rig.channel.send(codec.encode(_frame(i)), None, pinned=False)
            view, mapping, layout = rig.receive()
            assert not mapping.pinned
            assert np.all(rig.copy(view, mapping, layout).cpu() == i)
            del view
        assert rig.copier.stats.pageable_copies == 3 and rig.copier.stats.registrations == 0
        assert sum("not `pinned: true`" in r.getMessage() for r in caplog.records) == 1
    gpu.close()
    gpu.check()


def test_pinned_pool_over_budget_is_refused_naming_output_and_sizes(tmp_path: Path,
                                                                     gpu: StandinCuda):
    with make_rig(tmp_path, gpu, pinned_budget=64 * 1024) as rig:
        with pytest.raises(PinnedBudgetExceeded) as info:
            rig.send(np.zeros((256, 256, 4), dtype=np.uint8))
        text = str(info.value)
        assert "cam/image" in text and "pinned budget is 0.1 MiB" in text
        assert "pinned_budget" in text and budget.BUDGET_ENV in text


def test_the_budget_counts_a_pool_at_the_size_of_its_segment(tmp_path: Path, gpu: StandinCuda):
    """Slots are rounded up to whole pages; the budget used to count `slots x slot_bytes` and
    let a pool through that was larger than the budget by those roundings."""
    need = pool_bytes(2, 5000)
    assert need == PAGE + 2 * 2 * PAGE
    with (pytest.raises(PinnedBudgetExceeded),
          make_rig(tmp_path, gpu, slots=2, slot_bytes=5000, pinned_budget=need - 1)):
        pass
    (tmp_path / "again").mkdir()
    with make_rig(tmp_path / "again", gpu, slots=2, slot_bytes=5000, pinned_budget=need) as rig:
        assert rig.channel.pool is not None and rig.channel.pool.segment.size == need
