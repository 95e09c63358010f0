"""The CUDA stand-in keeps the CUDA rules pinflow's GPU path relies on, and breaking one of
them shows (wrong bytes, an error, or a recorded violation): otherwise the tests that run
pinflow on it would prove nothing."""

from __future__ import annotations

import gc
import mmap
import os
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from pinflow.errors import CudaError
from pinflow.testing import Handle, StandinCuda, StandinEvent, use_standin
from pinflow.transport import gpu_runtime, gpu_select
from pinflow.transport.cuda_standin import runtime_from_spec
from pinflow.transport.gpu_runtime import HOST_REGISTER_PORTABLE as PORTABLE
from pinflow.transport.gpu_runtime import HOST_REGISTER_READ_ONLY as READ_ONLY

PAGE = mmap.PAGESIZE


@pytest.fixture
def gpu() -> Iterator[StandinCuda]:
    runtime = StandinCuda(devices=2)
    yield runtime
    runtime.close()


def _mapping(pages: int = 4, *, writable: bool = True) -> tuple[mmap.mmap, np.ndarray, int]:
    fd = os.memfd_create("standin-test")
    os.ftruncate(fd, pages * PAGE)
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    mm = mmap.mmap(fd, pages * PAGE, mmap.MAP_SHARED, prot)
    os.close(fd)
    array = np.frombuffer(mm, np.uint8)
    return mm, array, int(array.__array_interface__["data"][0])


def _blocker(gpu: StandinCuda, stream) -> threading.Event:
    """Hold ``stream`` at this point until the returned event is set."""
    gate = threading.Event()
    gpu.launch(stream, lambda: gate.wait(10))
    return gate


# -- streams and events ---------------------------------------------------------------------
def test_stream_work_runs_later_and_in_order(gpu: StandinCuda):
    stream = gpu.new_stream(0)
    gate = _blocker(gpu, stream)
    ran: list[int] = []
    for i in range(5):
        gpu.launch(stream, lambda i=i: ran.append(i))
    assert ran == [] and not stream.query(), "launches return before the work runs"
    gate.set()
    stream.synchronize()
    assert ran == [0, 1, 2, 3, 4]


def test_an_event_completes_when_its_stream_reaches_it(gpu: StandinCuda):
    stream = gpu.new_stream(0)
    gate = _blocker(gpu, stream)
    event = gpu.new_event()
    assert event.query(), "an event never recorded counts as complete"
    gpu.record_event(event, stream)
    assert not event.query()
    gate.set()
    gpu.synchronize_event(event)
    assert event.query()


def test_a_stream_that_waits_for_an_event_sees_the_copy_and_one_that_does_not_may_not(
        gpu: StandinCuda):
    copy_stream, consumer = gpu.copy_stream(0), gpu.new_stream(0)
    host = np.full(64, 7, np.uint8)
    seen: dict[str, int] = {}
    for ordered in (True, False):
        gate = _blocker(gpu, copy_stream)  # the copy is late
        tensor = gpu.empty((64,), np.dtype(np.uint8), 0, copy_stream)
        gpu.copy_from_host(tensor, host, copy_stream)
        if ordered:
            done = gpu.new_event()
            gpu.record_event(done, copy_stream)
            gpu.wait_event(consumer, done)
        key = "ordered" if ordered else "unordered"
        gpu.launch(consumer, lambda a, key=key: seen.__setitem__(key, int(a[0])), tensor)
        if not ordered:
            consumer.synchronize()  # the kernel ran before the copy
        gate.set()
        consumer.synchronize()
        copy_stream.synchronize()
    assert seen == {"ordered": 7, "unordered": 0xA5}, "fresh device memory reads 0xA5"


def test_waiting_for_an_event_means_its_record_at_the_time_of_the_wait(gpu: StandinCuda):
    first, second, consumer = gpu.new_stream(0), gpu.new_stream(0), gpu.new_stream(0)
    event = gpu.new_event()
    gpu.record_event(event, first)
    gpu.wait_event(consumer, event)  # waits for the record on `first` only
    gate = _blocker(gpu, second)
    gpu.record_event(event, second)  # re-recorded on a stream that is held
    ran = threading.Event()
    gpu.launch(consumer, ran.set)
    assert ran.wait(5), "a later record must not hold back an earlier wait"
    gate.set()


def test_a_spinning_event_wait_is_a_violation():
    gpu = StandinCuda()
    gpu.synchronize_event(StandinEvent(blocking=False))
    gpu.close()
    with pytest.raises(AssertionError, match="BlockingSync"):
        gpu.check()


def test_handles_are_opaque_and_streams_are_passed_as_objects(gpu: StandinCuda):
    stream = gpu.new_stream(0)
    assert int(stream.handle) != stream.handle.getPtr()
    assert isinstance(stream.handle, Handle)
    with pytest.raises(TypeError, match="not a handle"):
        gpu.record_event(gpu.new_event(), stream.handle)
    with pytest.raises(TypeError):
        gpu.wait_event(int(stream.handle), gpu.new_event())


# -- copies and registration ----------------------------------------------------------------
def test_a_pinned_copy_reads_the_source_when_it_runs_a_pageable_one_when_issued(
        gpu: StandinCuda):
    mm, host, address = _mapping(1)
    stream = gpu.copy_stream(0)
    gpu.host_register(address, PAGE, PORTABLE)
    pinned = gpu.empty((PAGE,), np.dtype(np.uint8), 0, stream)
    pageable = gpu.empty((PAGE,), np.dtype(np.uint8), 0, stream)
    other = np.zeros(PAGE, np.uint8)
    gate = _blocker(gpu, stream)
    gpu.copy_from_host(pinned, host, stream)
    gpu.copy_from_host(pageable, other, stream)
    host[:] = 1  # written while the DMA is still queued: the slot was reused too early
    other[:] = 1
    gate.set()
    stream.synchronize()
    assert pinned.device_array()[0] == 1, "a DMA reads the source when it runs"
    assert pageable.device_array()[0] == 0, "pageable memory is staged at the call"
    assert (gpu.pinned_copies, gpu.pageable_copies) == (1, 1)
    gpu.host_unregister(address)
    del host, pinned
    gc.collect()
    mm.close()
    gpu.check()


def test_the_registration_table_refuses_what_the_driver_refuses(gpu: StandinCuda):
    mm, _host, address = _mapping(4)
    gpu.host_register(address, 2 * PAGE, PORTABLE)
    with pytest.raises(CudaError, match="HostMemoryAlreadyRegistered"):
        gpu.host_register(address + PAGE, 2 * PAGE, PORTABLE)  # overlaps by one page
    gpu.host_register(address + 2 * PAGE, PAGE, PORTABLE)  # adjacent is fine
    with pytest.raises(CudaError, match="InvalidValue"):
        gpu.host_unregister(address + PAGE)  # an interior address
    with pytest.raises(CudaError, match="HostMemoryNotRegistered"):
        gpu.host_unregister(address + 3 * PAGE)
    gpu.host_unregister(address)
    gpu.host_unregister(address + 2 * PAGE)
    del _host
    mm.close()
    with pytest.raises(CudaError, match="InvalidValue"):
        gpu.host_register(address, PAGE, PORTABLE)  # no longer mapped
    gpu.check()


def test_a_read_only_mapping_needs_the_read_only_flag_and_device_support():
    mm, host, address = _mapping(1, writable=False)
    gpu = StandinCuda()
    with pytest.raises(CudaError, match="InvalidValue"):
        gpu.host_register(address, PAGE, PORTABLE)
    gpu.host_register(address, PAGE, PORTABLE | READ_ONLY)
    gpu.host_unregister(address)
    unsupported = StandinCuda(read_only_register=False)
    with pytest.raises(CudaError, match="NotSupported"):
        unsupported.host_register(address, PAGE, PORTABLE | READ_ONLY)
    with pytest.raises(CudaError, match="NotSupported"):
        StandinCuda(host_register=False).host_register(address, PAGE, PORTABLE | READ_ONLY)
    del host
    mm.close()


def test_unregistering_memory_with_a_copy_still_queued_is_a_violation(gpu: StandinCuda):
    mm, host, address = _mapping(1)
    stream = gpu.copy_stream(0)
    gpu.host_register(address, PAGE, PORTABLE)
    target = gpu.empty((PAGE,), np.dtype(np.uint8), 0, stream)
    gate = _blocker(gpu, stream)
    gpu.copy_from_host(target, host, stream)
    gpu.host_unregister(address)
    gate.set()
    stream.synchronize()
    assert any("still queued" in v for v in gpu.violations)
    del host
    mm.close()


def test_copying_from_memory_while_it_is_being_registered_is_a_violation():
    gpu = StandinCuda(register_delay_s=0.3)
    mm, host, address = _mapping(1)
    stream = gpu.copy_stream(0)
    target = gpu.empty((PAGE,), np.dtype(np.uint8), 0, stream)
    registering = threading.Thread(target=gpu.host_register, args=(address, PAGE, PORTABLE))
    registering.start()
    while not gpu._registering:
        threading.Event().wait(0.001)
    gpu.copy_from_host(target, host, stream)
    registering.join()
    stream.synchronize()
    assert any("being registered" in v for v in gpu.violations)
    gpu.host_unregister(address)
    gpu.close()
    del host
    mm.close()


def test_a_copy_spanning_registered_and_unregistered_memory_fails(gpu: StandinCuda):
    mm, host, address = _mapping(2)
    gpu.host_register(address, PAGE, PORTABLE)
    stream = gpu.copy_stream(0)
    target = gpu.empty((2 * PAGE,), np.dtype(np.uint8), 0, stream)
    with pytest.raises(CudaError, match="InvalidValue"):
        gpu.copy_from_host(target, host, stream)
    gpu.host_unregister(address)
    del host
    mm.close()


def test_unregistering_after_unmapping_is_a_violation(gpu: StandinCuda):
    mm, host, address = _mapping(1)
    gpu.host_register(address, PAGE, PORTABLE)
    del host
    mm.close()
    gpu.host_unregister(address)
    assert any("after the memory was unmapped" in v for v in gpu.violations)


# -- device memory ----------------------------------------------------------------------------
def test_a_freed_block_is_handed_out_again_at_once_on_its_stream(gpu: StandinCuda):
    stream = gpu.new_stream(0)
    first = gpu.empty((256,), np.dtype(np.uint8), 0, stream)
    address = first.data_ptr()
    del first
    again = gpu.empty((256,), np.dtype(np.uint8), 0, stream)
    assert again.data_ptr() == address
    other_stream = gpu.empty((256,), np.dtype(np.uint8), 0, gpu.new_stream(0))
    assert other_stream.data_ptr() != address, "pools are per stream"


def test_a_block_used_on_another_stream_without_record_stream_is_overwritten_while_read(
        gpu: StandinCuda):
    """The hazard record_stream exists for, made visible."""
    owner, reader = gpu.new_stream(0), gpu.new_stream(0)
    seen: list[int] = []
    for recorded in (False, True):
        tensor = gpu.empty((64,), np.dtype(np.uint8), 0, owner)
        gpu.launch(owner, lambda a: a.fill(1), tensor)
        owner.synchronize()
        gate = _blocker(gpu, reader)
        gpu.launch(reader, lambda a: seen.append(int(a[0])), tensor)
        if recorded:
            gpu.record_stream(tensor, reader)
        del tensor  # freed while `reader` has not read it yet
        reuse = gpu.empty((64,), np.dtype(np.uint8), 0, owner)
        gpu.launch(owner, lambda a: a.fill(2), reuse)
        owner.synchronize()
        gate.set()
        reader.synchronize()
        del reuse
    assert seen == [2, 1], "unrecorded: overwritten before read; recorded: intact"


def test_freeing_a_tensor_whose_stream_was_destroyed_is_a_violation(gpu: StandinCuda):
    recorded_on, allocated_on = gpu.new_stream(0), gpu.new_stream(0)
    tensor = gpu.empty((64,), np.dtype(np.uint8), 0, gpu.copy_stream(0))
    gpu.record_stream(tensor, recorded_on)
    other = gpu.empty((64,), np.dtype(np.uint8), 0, allocated_on)
    gpu.destroy_stream(recorded_on)
    gpu.destroy_stream(allocated_on)
    del tensor, other
    gc.collect()
    assert any("recorded on destroyed stream" in v for v in gpu.violations)
    assert any("allocated on destroyed stream" in v for v in gpu.violations)
    with pytest.raises(ValueError, match="never destroyed"):
        gpu.destroy_stream(gpu.copy_stream(0))


def test_cpu_reads_on_the_current_stream_after_its_queued_work(gpu: StandinCuda):
    stream = gpu.new_stream(0)
    tensor = gpu.empty((4, 4), np.dtype(np.float32), 0, stream)
    with gpu.use_stream(stream):
        gate = _blocker(gpu, stream)
        gpu.launch(stream, lambda a: a.fill(2.5), tensor)
        gate.set()
        assert tensor.cpu().tolist() == [[2.5] * 4] * 4
    assert tensor.device == "cuda:0" and tensor.shape == (4, 4)


# -- devices ----------------------------------------------------------------------------------
def test_the_current_device_is_per_thread_and_calls_bind_to_it(gpu: StandinCuda):
    mm, host, address = _mapping(1)

    def register_on_device_1() -> None:
        gpu.set_device(1)
        gpu.host_register(address, PAGE, PORTABLE)

    worker = threading.Thread(target=register_on_device_1)
    worker.start()
    worker.join()
    assert gpu.contexts == {1}, "the worker's calls ran on device 1"
    gpu.host_unregister(address)  # this thread never selected a device: device 0
    assert gpu.contexts == {0, 1}
    with pytest.raises(CudaError, match="InvalidDevice"):
        gpu.set_device(2)
    del host
    mm.close()


def test_a_dataflow_selects_the_stand_in_by_environment(monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(ValueError, match="unknown stand-in option 'gpus'"):
        runtime_from_spec("standin:gpus=2")
    monkeypatch.setenv(gpu_runtime.RUNTIME_ENV, "standin:devices=3,copy_delay_ms=2,read_only=0")
    gpu_select.use(None)
    try:
        selection = gpu_select.select()
        runtime = selection.runtime
        assert isinstance(runtime, StandinCuda) and selection.probe.device_count == 3
        assert (runtime.copy_delay_s, runtime.read_only_register) == (0.002, False)
        assert gpu_select.select().runtime is runtime, "one stand-in per process"
        with use_standin() as inner:
            assert gpu_select.select().runtime is inner
        runtime.close()
    finally:
        gpu_select.use(None)
