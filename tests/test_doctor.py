"""`pinflow doctor` tells what the pinned path does on this machine, and `--gpu-check` proves
the GPU path (here on the CPU stand-in; on a GPU the same command runs it on the device)."""

import json

from pinflow.tools import doctor
from pinflow.transport import gpu_select
from pinflow.transport.gpu_runtime import Probe


def test_doctor_names_the_path_a_pinned_output_takes_here(pinflow):
    run = pinflow("doctor")
    assert run.returncode == 0, run.output
    assert "pinned=True here" in run.stdout and "memlock limit" in run.stdout
    if not gpu_select.is_available():
        assert "CPU fallback" in run.stdout and gpu_select.unavailable_reason() in run.stdout


def test_doctor_json_is_machine_readable(pinflow):
    run = pinflow("doctor", "--json")
    report = json.loads(run.stdout)
    assert report["pinned_budget"] > 0 and report["shm_total"] > 0
    assert report["cuda_devices"] >= 0 and isinstance(report["pinned_path"], str)
    assert isinstance(report["host_register"], list)


def test_doctor_reports_registration_support_of_the_stand_in(pinflow):
    run = pinflow("doctor", "--json", env={"PINFLOW_GPU_RUNTIME": "standin:read_only=0"})
    report = json.loads(run.stdout)
    assert report["host_register"] == [
        {"device": 0, "read_only": False, "read_write": True,
         "detail": report["host_register"][0]["detail"]}]
    assert "cudaErrorNotSupported" in report["host_register"][0]["detail"]
    assert report["pinned_path"].startswith("CPU stand-in")


def _torch(sees_gpu: bool, build: str | None = "12.4") -> doctor.TorchFacts:
    return doctor.TorchFacts("2.5.1", build, sees_gpu, 1 if sees_gpu else 0)


def test_a_gpu_torch_sees_but_pinflow_cannot_register_is_named_with_the_fix():
    path = doctor.pinned_path(
        _torch(True), Probe(True, None, 1, "torch"), "torch",
        [{"device": 0, "read_only": False, "read_write": False,
          "detail": "cudaHostRegister failed: cudaErrorNotSupported (801)"}], "550.54")
    assert path.startswith("pageable copies: torch sees the GPU")
    assert "cudaErrorNotSupported" in path and "cudaHostRegister" in path


def test_a_gpu_torch_sees_while_the_stand_in_is_selected_is_named_with_the_fix():
    path = doctor.pinned_path(_torch(True), Probe(True, None, 1, "stand-in"), "stand-in", [],
                              "550.54")
    assert "torch sees 1 GPU(s)" in path and "unset PINFLOW_GPU_RUNTIME" in path


def test_a_cpu_only_torch_is_named_with_the_fix():
    import pytest
    import torch

    from pinflow.transport import torch_cuda

    if torch.version.cuda is not None:
        pytest.skip("torch here is a CUDA build")
    reason = torch_cuda.probe().reason
    assert reason.startswith(f"torch {torch.__version__} is a CPU-only build")
    assert "install a CUDA build of torch" in reason
    path = doctor.pinned_path(_torch(False, None), Probe(False, reason), "torch", [], None)
    assert path.startswith("CPU fallback") and reason in path


def test_the_working_gpu_path_says_how_it_copies():
    path = doctor.pinned_path(_torch(True), Probe(True, None, 1, "torch"), "torch",
                              [{"device": 0, "read_only": True, "read_write": True,
                                "detail": ""}], "580.1")
    assert path.startswith("DMA through torch's CUDA runtime")
    assert "cuda:0 read-only" in path


def test_gpu_self_test_passes_on_the_stand_in(pinflow):
    run = pinflow("doctor", "--gpu-check", "--standin", timeout=120)
    assert run.returncode == 0, run.output
    lines = run.stdout.strip().splitlines()
    checks = [line for line in lines if line.startswith(("PASS", "FAIL"))]
    assert len(checks) >= 12 and all(line.startswith("PASS") for line in checks), run.stdout
    for name in ("registration once per segment", "device contents under load",
                 "no reuse of freed device memory", "H2D bandwidth", "device-delivery latency",
                 "nothing leaked", "nothing left in shared memory"):
        assert any(name in line for line in checks), name
    assert "not a GPU's" in run.stdout, "stand-in figures are marked as such"
    assert lines[-1] == "all checks passed"


def test_gpu_self_test_without_a_gpu_says_why_in_one_line(pinflow):
    if gpu_select.is_available():
        import pytest

        pytest.skip("this machine has a GPU")
    run = pinflow("doctor", "--gpu-check")
    assert run.returncode == 1
    assert run.stdout == ""
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("pinflow: error: no GPU for the self-test: ")
