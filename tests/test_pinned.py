"""The pinned path without CUDA, end to end with real processes: it works, zero-copy, and
says once that device delivery fell back to the CPU."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pinflow.transport import gpu_select


def test_importing_pinflow_loads_neither_cuda_nor_torch():
    code = ("import sys, pinflow, pinflow.nodes.node, pinflow.transport.channel, "
            "pinflow.transport.receiver, pinflow.runtime.launcher, pinflow.testing; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cuda', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(gpu_select.is_available(), reason="tests the no-CUDA fallback")
def test_pinned_frames_reach_a_cuda_input_as_zero_copy_cpu_data_with_one_warning(pinflow):
    run = pinflow("run", "pinned_fallback.yml")
    assert run.returncode == 0, run.output
    result = run.result("consumer")
    seen = result["seen"]
    assert [s["index"] for s in seen] == list(range(10))
    assert all(s["pinned"] and s["device"] == "cpu" and s["tensor_device"] == "cpu"
               for s in seen)
    assert all(s["zero_copy"] and s["tensor_shares_memory"] for s in seen)
    assert run.stdout.count("asked for cuda but CUDA is not usable here") == 1
    assert result["cuda_error"].startswith("cannot deliver to cuda:")
    assert result["stats"] == {}, "no CUDA object was created"


@pytest.mark.skipif(gpu_select.is_available(), reason="tests the no-CUDA fallback")
def test_required_device_without_cuda_fails_the_node_with_the_reason(pinflow):
    run = pinflow("run", "pinned_required.yml", "--stop-after", "10")
    assert run.returncode == 1
    assert "node 'consumer' input 'frames' requires cuda:" in run.stdout
    assert "node 'consumer' failed: exit code 1" in run.stderr


def test_pinned_pools_over_the_budget_are_refused_before_any_node_starts(pinflow):
    run = pinflow("run", "pinned_budget.yml")
    assert run.returncode == 1
    assert "pinned pools would use 32.0 MiB but the pinned budget is 16.0 MiB" in run.stderr
    assert "camera/frames (4 x 8388608 B)" in run.stderr
    assert "started" not in run.stdout
