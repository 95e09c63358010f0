"""Real-GPU tests: skipped without a CUDA device and a CUDA build of torch (see conftest).
On a GPU machine:

    .venv/bin/python -m pytest -m gpu -v -s

None of them synchronises per frame: the consumer queues its reads on its own stream and
reads the results once, so a wrong stream order shows up as wrong checksums.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pinflow.testing.rig import make_rig
from pinflow.tools.gpu_check import TorchKernels, checksum, frame, measure_h2d

pytestmark = pytest.mark.gpu

FRAME = (1080, 1920, 4)


@pytest.fixture
def runtime():
    from pinflow.transport.torch_cuda import TorchRuntime

    return TorchRuntime()


@pytest.fixture
def kernels() -> Iterator[TorchKernels]:
    yield TorchKernels(0)


def test_frames_arrive_intact_under_load_without_per_frame_synchronize(
        tmp_path: Path, runtime, kernels: TorchKernels):
    count = 200
    results = kernels.results(count)
    with make_rig(tmp_path, runtime) as rig, kernels.using():
        for i in range(count):
            rig.send(frame(i, FRAME))
            view, mapping, layout = rig.receive()
            tensor = rig.copy(view, mapping, layout)
            assert tensor.is_cuda and tuple(tensor.shape) == FRAME
            if i % 10 == 0:
                kernels.sleep(0.005)  # the consumer lags behind the copies
            kernels.checksum_into(tensor, results, i)
            del tensor, view
        got = kernels.read(results)
        assert rig.copier.stats.registrations == 1 and rig.copier.stats.pageable_copies == 0
    assert [int(v) for v in got] == [checksum(frame(i, FRAME)) for i in range(count)]


def test_freed_device_memory_is_not_reused_while_a_kernel_still_reads_it(
        tmp_path: Path, runtime, kernels: TorchKernels):
    results = kernels.results(2)
    read = runtime.new_event()
    with make_rig(tmp_path, runtime) as rig, kernels.using():
        rig.send(frame(1, FRAME))
        tensor = rig.copy(*rig.receive())
        address = tensor.data_ptr()
        kernels.sleep(0.3)
        kernels.checksum_into(tensor, results, 0)
        runtime.record_event(read, kernels.stream)
        del tensor
        rig.send(frame(2, FRAME))
        second = rig.copy(*rig.receive())
        reused_early = second.data_ptr() == address and not read.query()
        kernels.checksum_into(second, results, 1)
        del second
        got = kernels.read(results)
    assert not reused_early
    assert [int(v) for v in got] == [checksum(frame(1, FRAME)), checksum(frame(2, FRAME))]


def test_a_tensor_for_another_stream_is_ordered_on_that_stream(
        tmp_path: Path, runtime, kernels: TorchKernels):
    count = 50
    results = kernels.results(count)
    with make_rig(tmp_path, runtime) as rig:
        for i in range(count):
            rig.send(frame(i, FRAME))
            view, mapping, layout = rig.receive()
            tensor = rig.copy(view, mapping, layout, consumer_stream=kernels.stream)
            with kernels.using():
                kernels.checksum_into(tensor, results, i)
            del tensor, view
        got = kernels.read(results)
    assert [int(v) for v in got] == [checksum(frame(i, FRAME)) for i in range(count)]


def test_one_registration_the_driver_sees_over_10000_frames(tmp_path: Path, runtime,
                                                            kernels: TorchKernels):
    small = (64, 64, 4)
    with make_rig(tmp_path, runtime) as rig, kernels.using():
        for i in range(10_000):
            rig.send(frame(i, small))
            view, mapping, layout = rig.receive()
            tensor = rig.copy(view, mapping, layout)
            del view
        segment = rig.receiver.mappings()[0].segment
        assert runtime.is_registered(segment.view(0, segment.size, writable=False))
        last = kernels.read(tensor.reshape(-1)[8:16])
        assert rig.copier.stats.registrations == 1 and rig.copier.stats.copies == 10_000
        assert rig.receiver.segments_mapped == 1
    assert np.all(last == 9_999 % 251)


def test_tensors_stay_usable_after_the_copier_closed(tmp_path: Path, runtime,
                                                     kernels: TorchKernels):
    results = kernels.results(3)
    with make_rig(tmp_path, runtime) as rig, kernels.using():
        tensors = []
        for i in range(3):
            rig.send(frame(i, FRAME))
            tensors.append(rig.copy(*rig.receive()))
    with kernels.using():
        for i, tensor in enumerate(tensors):
            kernels.checksum_into(tensor, results, i)
    del tensors, tensor  # freed after close: recorded streams are pooled, never destroyed
    got = kernels.read(results)
    assert [int(v) for v in got] == [checksum(frame(i, FRAME)) for i in range(3)]


def test_pinned_bandwidth_is_measured_from_memory_the_driver_sees_registered(runtime):
    """Prints H2D GB/s (the figures go to README/RFC from a real run); measure_h2d raises
    if the driver does not see its pinned source as registered."""
    pinned, pageable = measure_h2d(runtime, 0, int(np.prod(FRAME)), 100)
    print(f"\nH2D {int(np.prod(FRAME)):,} B: pinned {pinned:.1f} GB/s, pageable "
          f"{pageable:.1f} GB/s, ratio {pinned / pageable:.2f}x")


def test_the_self_test_passes_on_this_gpu():
    from pinflow.tools import gpu_check

    lines: list[str] = []
    status = gpu_check.run(standin=False, say=lines.append)
    print("\n" + "\n".join(lines))
    assert status == 0, "\n".join(line for line in lines if line.startswith("FAIL"))
