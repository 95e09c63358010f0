"""Device delivery when segments come and go, on the CUDA stand-in: frames queued from a pool
the producer replaced, a segment forgotten while a copy is being issued, unregister failures,
device binding of pinflow's threads, read-only registration and one copier per device."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pinflow.nodes.devices import Devices
from pinflow.testing import StandinCuda, use_standin
from pinflow.testing.rig import make_rig
from pinflow.transport.gpu_runtime import HOST_REGISTER_PORTABLE, HOST_REGISTER_READ_ONLY

SMALL, LARGE = (16, 64, 4), (32, 64, 4)  # a larger frame makes the producer regrow its pool


def _frame(i: int, shape=SMALL) -> np.ndarray:
    return np.full(shape, i % 251, dtype=np.uint8)


@pytest.fixture
def gpu() -> Iterator[StandinCuda]:
    runtime = StandinCuda(copy_delay_s=0.001)
    yield runtime
    runtime.close()


def test_frames_queued_from_a_replaced_pool_are_still_delivered_intact(tmp_path: Path,
                                                                       gpu: StandinCuda):
    with make_rig(tmp_path, gpu, consumer_queue_sizes=(4,)) as rig:
        queued = []
        for i in range(3):  # received but not yet copied: still queued in a node's inbox
            rig.send(_frame(i))
            queued.append(rig.receive())
        old = queued[0][1].segment
        rig.send(_frame(9, LARGE))
        new_view, new_mapping, new_layout = rig.receive()  # maps the new pool, forgets the old
        assert new_mapping.segment is not old and old.closed
        tensors = [rig.copy(view, mapping, layout) for view, mapping, layout in queued]
        tensors.append(rig.copy(new_view, new_mapping, new_layout))
        assert [int(t.cpu().reshape(-1)[0]) for t in tensors] == [0, 1, 2, 9]
        stats = rig.copier.stats
        assert stats.forgotten_copies == 3 and stats.pageable_copies == 3 and stats.copies == 1
        assert stats.registrations == 2 and stats.unregistrations == 1, \
            "the forgotten segment is never registered again"
    gpu.check()


def test_forgetting_a_segment_waits_for_a_copy_that_is_being_issued(tmp_path: Path):
    issuing = threading.Event()

    class SlowIssue(StandinCuda):
        """The host-side part of a copy takes a while (driver overhead, a busy core)."""

        def copy_from_host(self, buffer, host, stream) -> None:
            super().copy_from_host(buffer, host, stream)
            issuing.set()
            threading.Event().wait(0.2)

    gpu = SlowIssue(copy_delay_s=0.2)
    with make_rig(tmp_path, gpu) as rig:
        rig.send(_frame(3))
        view, mapping, layout = rig.receive()
        results = []
        copier = threading.Thread(target=lambda: results.append(rig.copy(view, mapping, layout)))
        copier.start()
        assert issuing.wait(5)
        rig.copier.forget(mapping.segment)  # the receive thread, mid-copy
        copier.join(5)
        assert rig.copier.stats.unregistrations == 1
        assert int(results[0].cpu()[0, 0, 0]) == 3
    gpu.close()
    gpu.check()  # unregistering with the copy still queued would be recorded here


def test_unregister_failures_are_logged_and_counted_never_raised(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    gpu = StandinCuda(unregister_error=1)
    caplog.set_level(logging.ERROR, logger="pinflow.cuda")
    with make_rig(tmp_path, gpu) as rig:
        rig.send(_frame(1))
        view, mapping, layout = rig.receive()
        rig.copy(view, mapping, layout)
        rig.send(_frame(2, LARGE))
        view, mapping, layout = rig.receive()  # regrowth: forgets the old segment
        assert int(rig.copy(view, mapping, layout).cpu()[0, 0, 0]) == 2, \
            "the frame that caused the regrowth is delivered"
        del view
        rig.receiver.close()  # forgets the new one: must finish despite the failure
        assert rig.copier.stats.unregistration_failures == 2
    errors = [r.getMessage() for r in caplog.records if "cannot unregister" in r.getMessage()]
    assert len(errors) == 2 and "cudaErrorInvalidValue" in errors[0]
    gpu.close()
    gpu.check()


def test_pinflow_threads_bind_to_their_device_before_calling_cuda(tmp_path: Path):
    gpu = StandinCuda(devices=2)
    with make_rig(tmp_path, gpu, device=1) as rig:
        rig.send(_frame(1))
        view, mapping, layout = rig.receive()
        tensor = rig.copy(view, mapping, layout)
        rig.send(_frame(2, LARGE))  # regrowth: unregister on the receive thread's request
        rig.receive()
        assert tensor.device == "cuda:1" and int(tensor.cpu()[0, 0, 0]) == 1
    gpu.close()
    assert gpu.contexts == {1}, "no thread of pinflow's created device 0's context"
    gpu.check()


def test_without_read_only_registration_device_nodes_map_segments_read_write(
        tmp_path: Path):
    gpu = StandinCuda(read_only_register=False)
    with make_rig(tmp_path, gpu) as rig:
        assert rig.receiver.writable_mappings
        rig.send(_frame(4))
        view, mapping, layout = rig.receive()
        assert mapping.segment.writable
        assert int(rig.copy(view, mapping, layout).cpu()[0, 0, 0]) == 4
        assert rig.copier.stats.copies == 1, "registered read-write, copied pinned"
        (size, flags), = (v for b, v in gpu.registered.items()
                          if b == mapping.segment.address())
        assert flags == HOST_REGISTER_PORTABLE and size == mapping.segment.size
    gpu.close()
    gpu.check()


def test_a_read_only_mapping_the_device_cannot_register_is_copied_pageable_once_warned(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    gpu = StandinCuda(read_only_register=False)
    caplog.set_level(logging.WARNING, logger="pinflow.cuda")
    with make_rig(tmp_path, gpu) as rig:
        rig.receiver.writable_mappings = False  # as for `to_torch("cuda")` on a CPU input
        for i, shape in enumerate([SMALL, SMALL, LARGE]):  # two segments
            rig.send(_frame(i, shape))
            view, mapping, layout = rig.receive()
            assert int(rig.copy(view, mapping, layout).cpu().reshape(-1)[0]) == i
        stats = rig.copier.stats
        assert stats.pageable_copies == 3 and stats.registration_failures == 2
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("cannot register read-only" in w for w in warnings) == 1, warnings
    gpu.close()
    gpu.check()


def test_read_only_registration_is_used_where_the_device_supports_it(tmp_path: Path,
                                                                      gpu: StandinCuda):
    with make_rig(tmp_path, gpu) as rig:
        assert not rig.receiver.writable_mappings
        rig.send(_frame(1))
        view, mapping, layout = rig.receive()
        rig.copy(view, mapping, layout)
        assert not mapping.segment.writable
        assert gpu.registered[mapping.segment.address()][1] == (HOST_REGISTER_PORTABLE
                                                                | HOST_REGISTER_READ_ONLY)
    gpu.check()


def test_cuda_and_cuda_0_share_one_copier(gpu: StandinCuda):
    with use_standin(gpu):
        devices = Devices("n", [], lambda text: None)
        try:
            assert devices.delivery("cuda") is devices.delivery("cuda:0")
            assert devices.delivery("cuda:0").copier is devices.delivery("cuda").copier
            assert list(devices.stats()) == ["cuda:0"]
        finally:
            devices.close()
