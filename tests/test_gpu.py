"""Real-GPU tests: skipped without CUDA (see conftest). On a GPU machine:

    .venv/bin/python -m pytest -m gpu -v -s
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from pipeline_rig import make_rig

from pinflow.transport import cuda
from pinflow.transport.device import TorchBuffers

pytestmark = pytest.mark.gpu

FRAME = (1080, 1920, 4)


def _real_rig(tmp_path: Path, **options):
    runtime = cuda.load_runtime()
    return make_rig(tmp_path, runtime, TorchBuffers(cuda.Cuda(runtime), 0), **options)


def test_frames_arrive_intact_on_the_device_through_the_pinned_path(tmp_path: Path):
    import torch

    with _real_rig(tmp_path) as rig:
        for i in range(20):
            rig.send(np.full(FRAME, i % 251, dtype=np.uint8))
            view, mapping, layout = rig.receive()
            tensor = rig.copier.copy(view, view, layout, segment=mapping.segment, pinned=True)
            del view
            assert tensor.is_cuda and tuple(tensor.shape) == FRAME
            assert torch.all(tensor == i % 251).item()
        assert rig.copier.stats.registrations == 1 and rig.copier.stats.pageable_copies == 0


def test_no_registration_growth_over_10000_frames(tmp_path: Path):
    import torch

    with _real_rig(tmp_path) as rig:
        for i in range(10_000):
            rig.send(np.full((64, 64, 4), i % 251, dtype=np.uint8))
            view, mapping, layout = rig.receive()
            tensor = rig.copier.copy(view, view, layout, segment=mapping.segment, pinned=True)
            del view
        torch.cuda.synchronize()
        assert torch.all(tensor == 9_999 % 251).item()
        assert rig.copier.stats.registrations == 1
        assert rig.copier.stats.copies == 10_000
        assert rig.receiver.segments_mapped == 1


def test_pinned_and_pageable_bandwidth_are_measured_side_by_side(tmp_path: Path):
    """Prints H2D GB/s from a registered slot and from a plain numpy frame (no assertion on
    speed: machines differ; the figures go to README/RFC from a real run)."""
    import torch

    frame = np.full(FRAME, 3, dtype=np.uint8)
    device = torch.empty(FRAME, dtype=torch.uint8, device="cuda")
    rounds = 200

    def bandwidth(copy) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(rounds):
            copy()
        torch.cuda.synchronize()
        return rounds * frame.nbytes / (time.perf_counter() - start) / 1e9

    with _real_rig(tmp_path, slots=2) as rig:
        rig.send(frame)
        view, mapping, _layout = rig.receive()
        rig.copier.registration(mapping.segment, pinned=True)
        pinned_src = torch.from_numpy(np.array(view, copy=False)).reshape(FRAME)
        assert pinned_src.is_pinned(), "torch sees the registered slot as pinned memory"
        pinned = bandwidth(lambda: device.copy_(pinned_src, non_blocking=True))
        pageable_src = torch.from_numpy(frame)
        pageable = bandwidth(lambda: device.copy_(pageable_src, non_blocking=True))
    print(f"\nH2D 8,294,400 B: pinned slot {pinned:.1f} GB/s, pageable {pageable:.1f} GB/s, "
          f"ratio {pinned / pageable:.2f}x")
    assert pinned > 0 and pageable > 0
