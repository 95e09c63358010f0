"""`pinflow doctor` tells what the pinned path does on this machine."""

import json

from pinflow.transport import cuda


def test_doctor_names_the_path_a_pinned_output_takes_here(pinflow):
    run = pinflow("doctor")
    assert run.returncode == 0, run.output
    assert "pinned=True here" in run.stdout and "memlock limit" in run.stdout
    if not cuda.is_available():
        assert "CPU fallback" in run.stdout and cuda.unavailable_reason() in run.stdout


def test_doctor_json_is_machine_readable(pinflow):
    run = pinflow("doctor", "--json")
    report = json.loads(run.stdout)
    assert report["pinned_budget"] > 0 and report["shm_total"] > 0
    assert report["cuda_devices"] >= 0 and isinstance(report["pinned_path"], str)
