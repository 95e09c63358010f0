"""Stream ordering of device delivery, on the CUDA stand-in: an asynchronous consumer that
never synchronises per frame still reads every frame intact, and freed device memory is not
reused while a consumer stream may still read it. The stand-in runs streams on threads with
delays and reuses freed blocks at once, so a wrong order shows up as wrong bytes."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pinflow.testing import StandinCuda, StandinStream
from pinflow.testing.rig import Rig, make_rig

FRAME = (16, 64, 4)  # 4 KiB


def _frame(i: int) -> np.ndarray:
    """Every byte i % 251, the first 8 bytes i: a frame read too early, too late or torn is
    told apart from the right one."""
    frame = np.full(FRAME, i % 251, dtype=np.uint8)
    frame.reshape(-1)[:8] = np.frombuffer(np.int64(i).tobytes(), np.uint8)
    return frame


def _index_if_intact(array: np.ndarray) -> int:
    flat = array.reshape(-1)
    index = int(np.frombuffer(flat[:8].tobytes(), np.int64)[0])
    return index if np.all(flat[8:] == index % 251) else -1


class Checker:
    """A consumer 'kernel' that checks the frame it reads, queued on a stream."""

    def __init__(self) -> None:
        self.seen: dict[int, int] = {}
        self._lock = threading.Lock()

    def queue(self, gpu: StandinCuda, stream: StandinStream, slot: int, tensor) -> None:
        def kernel(array: np.ndarray) -> None:
            with self._lock:
                self.seen[slot] = _index_if_intact(array)
        gpu.launch(stream, kernel, tensor)


@pytest.fixture
def gpu() -> Iterator[StandinCuda]:
    runtime = StandinCuda(copy_delay_s=0.0005)
    yield runtime
    runtime.close()


def _deliver(rig: Rig, i: int, stream=None):
    rig.send(_frame(i))
    view, mapping, layout = rig.receive()
    return rig.copy(view, mapping, layout, consumer_stream=stream)


def test_every_frame_arrives_intact_under_load_without_per_frame_synchronize(
        tmp_path: Path, gpu: StandinCuda):
    consumer = gpu.new_stream(0, delay_s=0.001, label="consumer")  # lags behind the copies
    checker = Checker()
    with make_rig(tmp_path, gpu, slots=6, consumer_queue_sizes=(4,)) as rig, \
            gpu.use_stream(consumer):
        for i in range(300):
            tensor = _deliver(rig, i)  # ordered on the current stream: the consumer's
            checker.queue(gpu, consumer, i, tensor)
            del tensor  # the loop lets go at once, as an asynchronous consumer does
        consumer.synchronize()  # once, at the end, to read the results
        assert rig.copier.stats.copies == 300
    assert checker.seen == {i: i for i in range(300)}
    assert gpu.allocator.reused > 0, "freed blocks were reused once that was safe"
    gpu.check()


def test_freed_device_memory_is_not_reused_while_the_consumer_stream_still_reads_it(
        tmp_path: Path, gpu: StandinCuda):
    consumer = gpu.new_stream(0, label="consumer")
    checker = Checker()
    with make_rig(tmp_path, gpu) as rig, gpu.use_stream(consumer):
        first = _deliver(rig, 1)
        first_block = first.data_ptr()
        busy = threading.Event()
        gpu.launch(consumer, lambda _a: busy.wait(10), first)  # a long kernel ...
        checker.queue(gpu, consumer, 1, first)  # ... then one that reads frame 1
        del first  # freed while the consumer stream has not read it yet
        second = _deliver(rig, 2)
        assert second.data_ptr() != first_block, \
            "the allocator handed out memory a queued kernel still reads"
        busy.set()
        checker.queue(gpu, consumer, 2, second)
        consumer.synchronize()
        del second
        third = _deliver(rig, 3)  # now frame 1's block is free for good and may come back
        checker.queue(gpu, consumer, 3, third)
        consumer.synchronize()
    assert checker.seen == {1: 1, 2: 2, 3: 3}
    gpu.check()


def test_a_tensor_for_another_stream_is_ordered_and_protected_on_that_stream(
        tmp_path: Path, gpu: StandinCuda):
    """``event.to_torch(stream=s)`` with ``s`` not the current stream."""
    side = gpu.new_stream(0, delay_s=0.002, label="side")
    checker = Checker()
    with make_rig(tmp_path, gpu, slots=6, consumer_queue_sizes=(4,)) as rig:
        for i in range(100):
            tensor = _deliver(rig, i, stream=side)
            checker.queue(gpu, side, i, tensor)
            del tensor
        side.synchronize()
    assert checker.seen == {i: i for i in range(100)}
    gpu.check()


def test_the_consumer_waits_for_the_copy_on_the_device_not_on_the_host(tmp_path: Path):
    gpu = StandinCuda()
    checker = Checker()
    with make_rig(tmp_path, gpu) as rig:
        dma_busy = threading.Event()
        gpu.launch(gpu.copy_stream(0), lambda: dma_busy.wait(10))  # the copy engine is busy
        tensor = _deliver(rig, 5)
        assert np.all(tensor.device_array() == 0xA5), \
            "copy() returned before the DMA ran: no host synchronisation"
        checker.queue(gpu, gpu.current_stream(0), 5, tensor)
        dma_busy.set()
        gpu.current_stream(0).synchronize()
    assert checker.seen == {5: 5}, "the consumer's kernel ran after the copy"
    gpu.close()
    gpu.check()


def test_tensors_stay_valid_after_the_delivery_closed(tmp_path: Path, gpu: StandinCuda):
    consumer = gpu.new_stream(0, delay_s=0.01, label="consumer")
    checker = Checker()
    with make_rig(tmp_path, gpu) as rig, gpu.use_stream(consumer):
        tensors = [_deliver(rig, i) for i in range(3)]
    # The copier is closed: its copy stream must still exist for these tensors.
    for i, tensor in enumerate(tensors):
        checker.queue(gpu, consumer, i, tensor)
    del tensors, tensor
    gc.collect()
    consumer.synchronize()
    gpu.synchronize()
    assert checker.seen == {0: 0, 1: 1, 2: 2}
    assert gpu.allocator.live == 0, "every block went back to the allocator"
    gpu.check()  # freeing a tensor allocated or recorded on a destroyed stream: a violation


def test_copy_events_are_pooled_and_copy_streams_never_multiply(tmp_path: Path,
                                                                gpu: StandinCuda):
    for _run in range(3):
        with make_rig(tmp_path, gpu, slots=6, consumer_queue_sizes=(4,)) as rig:
            for i in range(200):
                _deliver(rig, i)
    gc.collect()
    assert gpu.events_created <= 3 * 64, "events are reused, not made per copy"
    assert gpu.events_created == gpu.events_destroyed, "every event was destroyed"
    assert gpu.streams_created == 1, "one copy stream per device, from a pool, for good"
    assert gpu.registered == {} and gpu.registrations == gpu.unregistrations, \
        "every registration (segments and support probes) was undone"
    gpu.check()


def test_a_copy_waits_for_its_segment_registration_instead_of_racing_it(tmp_path: Path):
    gpu = StandinCuda(register_delay_s=0.3)
    with make_rig(tmp_path, gpu) as rig:
        tensor = _deliver(rig, 4)  # mapping started the registration, still in progress
        stats = rig.copier.stats
        assert stats.registration_waits == 1 and stats.copies == 1
        assert stats.pageable_copies == 0
        assert _index_if_intact(tensor.cpu()) == 4
    gpu.close()
    gpu.check()  # a copy from memory being registered is a violation
