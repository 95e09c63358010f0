"""The GPU path's lifecycle, driven through RecordingCudaRuntime (a test double of the CUDA
runtime) with a real zenoh session, real shared-memory pools and real slot releases."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cuda_standin import HostBuffers, RecordingCudaRuntime
from pipeline_rig import Rig, make_rig

from pinflow.errors import PinnedBudgetExceeded
from pinflow.transport import budget
from pinflow.transport.cuda import probe

FRAME = (32, 64, 4)  # 8 KiB: above the shared-memory threshold, cheap to send 10,000 times


def _rig(tmp_path: Path, runtime: RecordingCudaRuntime, **options):
    return make_rig(tmp_path, runtime, HostBuffers(), **options)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with _rig(tmp_path, RecordingCudaRuntime()) as made:
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


def test_one_registration_per_segment_over_10000_messages(rig: Rig):
    for i in range(10_000):
        rig.send(_frame(i))
        view, mapping, layout = rig.receive()
        device = rig.copier.copy(view, view, layout, segment=mapping.segment, pinned=True)
        del view
        if i % 997 == 0:
            _wait(lambda: rig.copier.stats.in_flight == 0)
            assert np.all(device == i % 251)
    assert rig.runtime.count("cudaHostRegister") == 1
    assert rig.copier.stats.registrations == 1 and rig.copier.stats.copies == 10_000
    assert rig.copier.stats.pageable_copies == 0
    assert rig.channel.stats.pools_created == 1 and rig.receiver.segments_mapped == 1
    assert all(copy["pinned"] for copy in rig.runtime.copies)


def test_copy_is_issued_from_the_slot_address_in_the_registered_segment(rig: Rig):
    rig.send(_frame(7))
    view, mapping, layout = rig.receive()
    slot_address = view.__array_interface__["data"][0]
    device = rig.copier.copy(view, view, layout, segment=mapping.segment, pinned=True)
    (_name, (ptr, size, _flags)), = [c for c in rig.runtime.calls if c[0] == "cudaHostRegister"]
    assert ptr == mapping.segment.address() and size == mapping.segment.size
    copy = rig.runtime.copies[-1]
    assert copy["src"] == slot_address and copy["count"] == view.nbytes
    assert ptr < slot_address < ptr + size, "the DMA reads the slot itself: no staging copy"
    _wait(lambda: rig.copier.stats.in_flight == 0)
    assert np.all(device == 7)


def test_slot_returns_to_producer_only_after_copy_event_completes(tmp_path: Path):
    runtime = RecordingCudaRuntime(auto_complete=False)
    with _rig(tmp_path, runtime) as rig:
        rig.send(_frame(1))
        view, mapping, layout = rig.receive()
        device = rig.copier.copy(view, view, layout, segment=mapping.segment, pinned=True)
        del view
        time.sleep(0.3)  # plenty of time for a (wrong) early release to reach the producer
        assert rig.held_slots() == 1, "slot must stay held while its DMA may still read it"
        assert not np.any(device), "copy has not happened yet in the stand-in"
        runtime.complete_all()
        assert _wait(lambda: rig.held_slots() == 0), "slot released once the event completed"
        assert np.all(device == 1)


def test_consumer_stream_is_ordered_after_the_copy_event(rig: Rig):
    rig.send(_frame(2))
    view, mapping, layout = rig.receive()
    rig.copier.copy(view, view, layout, segment=mapping.segment, pinned=True,
                    consumer_stream="caller-stream")
    event, stream = rig.buffers.waited[-1]
    recorded = [args[0] for name, args in rig.runtime.calls if name == "cudaEventRecord"]
    assert stream == "caller-stream" and event == recorded[-1]


def test_unregister_happens_before_unmap_and_after_last_copy(rig: Rig):
    for i in range(5):
        rig.send(_frame(i))
        view, mapping, layout = rig.receive()
        rig.copier.copy(view, view, layout, segment=mapping.segment, pinned=True)
        del view
    rig.receiver.close()  # drops mappings: the copier must unregister first
    names = [name for name, _ in rig.runtime.calls]
    assert names.count("cudaHostUnregister") == 1
    unregister_at = names.index("cudaHostUnregister")
    last_sync = max(i for i, n in enumerate(names) if n == "cudaEventSynchronize")
    assert last_sync < unregister_at, "every copy completed before unregistering"
    assert rig.runtime.unregistered_while_mapped == [True], "unregistered while still mapped"
    assert rig.runtime.registered == {}


def test_registration_failure_falls_back_to_pageable_copies_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    runtime = RecordingCudaRuntime(register_error=801)
    caplog.set_level(logging.WARNING, logger="pinflow.cuda")
    with _rig(tmp_path, runtime) as rig:
        devices = []
        for i in range(3):
            rig.send(_frame(i))
            view, mapping, layout = rig.receive()
            devices.append(rig.copier.copy(view, view, layout, segment=mapping.segment,
                                           pinned=True))
            del view
        _wait(lambda: rig.copier.stats.in_flight == 0)
        assert [int(d[0]) for d in devices] == [0, 1, 2]
        stats = rig.copier.stats
        assert stats.registration_failures == 1 and stats.pageable_copies == 3
        assert stats.copies == 0 and runtime.count("cudaHostRegister") == 1
        assert runtime.count("cudaGetLastError") >= 1, "the failed call's error is cleared"
        warnings = [r.getMessage() for r in caplog.records]
        assert sum("cannot register" in w for w in warnings) == 1
        assert sum("pageable memory" in w for w in warnings) == 1
        assert "cudaErrorNotSupported" in warnings[0]


def test_pinned_pool_over_budget_is_refused_naming_output_and_sizes(tmp_path: Path):
    with _rig(tmp_path, RecordingCudaRuntime(), pinned_budget=64 * 1024) as rig:
        with pytest.raises(PinnedBudgetExceeded) as info:
            rig.send(np.zeros((256, 256, 4), dtype=np.uint8))
        text = str(info.value)
        assert "cam/image" in text and "pinned budget is 0.1 MiB" in text
        assert "pinned_budget" in text and budget.BUDGET_ENV in text


def test_probe_without_a_driver_explains_why():
    result = probe()
    if result.available:
        pytest.skip("this machine has CUDA")
    assert result.available is False and result.reason
    assert "cuda-python is not installed" in result.reason or "driver" in result.reason


def test_probe_with_stand_in_reports_devices():
    result = probe(RecordingCudaRuntime(devices=2))
    assert result.available and result.device_count == 2
    assert result.host_register_supported == [True, True]
