"""Device delivery in real node processes, on the CUDA stand-in (PINFLOW_GPU_RUNTIME=standin):
the path a GPU node takes, end to end, on a machine without a GPU."""

from __future__ import annotations

STANDIN = {"PINFLOW_GPU_RUNTIME": "standin:copy_delay_ms=1"}


def test_queued_frames_of_a_replaced_pool_and_both_spellings_of_a_device(pinflow):
    run = pinflow("run", "gpu_standin.yml", env=STANDIN, timeout=90)
    assert run.returncode == 0, run.output
    assert run.result("producer")["pools"] == 2, "the producer regrew its pool"
    result = run.result("consumer")
    assert result["seen"] == {"a": list(range(12)), "b": list(range(12))}, \
        "every frame intact on the device, in order, on both inputs"
    assert list(result["stats"]) == ["cuda:0"], "`cuda` and `cuda:0` share one copier"
    stats = result["stats"]["cuda:0"]
    assert stats["registrations"] == 2, "one registration per segment, not per input"
    assert stats["forgotten_copies"] == 12, "the old pool's queued frames, copied pageable"
    assert stats["copies"] == 12 and stats["unregistration_failures"] == 0
    assert result["violations"] == []
    assert result["contexts"] == [0]
    assert result["mappings"] == ["r--s"], "the consumer maps the producer's pools read-only"


def test_a_device_that_cannot_register_read_only_memory_gets_read_write_mappings(pinflow):
    run = pinflow("run", "gpu_standin.yml",
                  env={"PINFLOW_GPU_RUNTIME": "standin:copy_delay_ms=1,read_only=0"}, timeout=90)
    assert run.returncode == 0, run.output
    result = run.result("consumer")
    assert result["seen"] == {"a": list(range(12)), "b": list(range(12))}
    assert result["mappings"] == ["rw-s"]
    assert result["stats"]["cuda:0"]["copies"] == 12 and result["violations"] == []
