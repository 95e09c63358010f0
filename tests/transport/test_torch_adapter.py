"""The torch adapter's calls, checked against a recording fake of ``torch.cuda`` (no GPU here;
on a GPU, tests/test_gpu.py and ``pinflow doctor --gpu-check`` run the adapter for real).
These pin down the choices the GPU path's correctness rests on."""

from __future__ import annotations

import contextlib
import sys
import types
from typing import Any

import numpy as np
import pytest

from pinflow.errors import CudaError
from pinflow.transport import torch_cuda


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.current: Any = None


def _fake_torch(monkeypatch: pytest.MonkeyPatch, register_result: int = 0) -> _Recorder:
    rec = _Recorder()

    class Error(int):
        pass

    cudart = types.SimpleNamespace(
        cudaHostRegister=lambda p, n, f: rec.calls.append(("register", (p, n, f)))
        or Error(register_result),
        cudaHostUnregister=lambda p: rec.calls.append(("unregister", p)) or Error(0),
        cudaGetErrorString=lambda e: f"error {int(e)}",
    )

    class Stream:
        made = 0

        def __init__(self, device: int) -> None:
            Stream.made += 1
            self.device = types.SimpleNamespace(index=device)

    @contextlib.contextmanager
    def stream(s: Any):
        before, rec.current = rec.current, s
        yield
        rec.current = before

    class Event:
        def __init__(self, enable_timing: bool = False, blocking: bool = False) -> None:
            rec.calls.append(("event", {"enable_timing": enable_timing, "blocking": blocking}))

    def empty(shape, dtype, device):
        rec.calls.append(("empty", rec.current))
        return types.SimpleNamespace(shape=shape)

    cuda = types.SimpleNamespace(cudart=lambda: cudart, Stream=Stream, stream=stream,
                                 Event=Event, current_stream=lambda d: ("current", d))
    fake = types.SimpleNamespace(cuda=cuda, empty=empty, device=lambda kind, i: (kind, i),
                                 from_numpy=lambda a: types.SimpleNamespace(dtype=a.dtype))
    monkeypatch.setitem(sys.modules, "torch", fake)
    rec.stream_class = Stream  # type: ignore[attr-defined]
    return rec


def test_events_block_instead_of_spinning_and_record_no_timing(monkeypatch):
    rec = _fake_torch(monkeypatch)
    torch_cuda.TorchRuntime().new_event()
    assert ("event", {"enable_timing": False, "blocking": True}) in rec.calls


def test_the_copy_stream_comes_from_torchs_pool_once_per_device(monkeypatch):
    rec = _fake_torch(monkeypatch)
    runtime = torch_cuda.TorchRuntime()
    first = runtime.copy_stream(1)
    assert runtime.copy_stream(1) is first and rec.stream_class.made == 1
    assert runtime.stream_device(first) == 1


def test_the_destination_is_allocated_on_the_stream_it_is_asked_for(monkeypatch):
    rec = _fake_torch(monkeypatch)
    runtime = torch_cuda.TorchRuntime()
    stream = runtime.copy_stream(0)
    runtime.empty((4, 4), np.dtype(np.uint8), 0, stream)
    assert ("empty", stream) in rec.calls


def test_registration_goes_through_torchs_runtime_and_errors_are_named(monkeypatch):
    rec = _fake_torch(monkeypatch, register_result=712)
    runtime = torch_cuda.TorchRuntime()
    with pytest.raises(CudaError) as info:
        runtime.host_register(0x1000, 4096, 9)
    assert rec.calls[0] == ("register", (0x1000, 4096, 9))
    assert info.value.code == 712 and info.value.name == "cudaErrorHostMemoryAlreadyRegistered"
