"""End-to-end behaviour of `pinflow run` with real processes and real zenoh sessions."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
from conftest import DATAFLOWS, assert_no_orphans


def test_messages_arrive_in_order_then_input_closed_and_run_exits_zero(pinflow):
    run = pinflow("run", "order.yml")
    assert run.returncode == 0, run.output
    events = run.result("recorder")["events"]
    assert [e["value"] for e in events[:-2]] == [[i] for i in range(20)]
    assert events[-2:] == [{"type": "INPUT_CLOSED", "id": "numbers"},
                           {"type": "STOP", "id": "ALL_INPUTS_CLOSED"}]
    assert run.result("counter")["sent"] == 20


def test_stop_after_delivers_stop_to_every_node_and_leaves_no_process(pinflow):
    run = pinflow("run", "stop.yml", "--stop-after", "2")
    assert run.returncode == 0, run.output
    events = run.result("recorder")["events"]
    assert events[-1] == {"type": "STOP", "id": "MANUAL"}
    assert len(events) > 20
    assert_no_orphans([run.result("recorder")["pid"], run.result("counter")["pid"]])


def test_node_output_is_prefixed_and_kept_in_per_node_logs(pinflow, tmp_path):
    run = pinflow("run", "crash.yml", "--stop-after", "3")
    assert "crasher | RuntimeError: crasher failed on purpose" in run.stdout
    logs = list((tmp_path / "logs").glob("*/crasher.log"))
    assert logs and "crasher failed on purpose" in logs[0].read_text()


def test_crashing_node_makes_run_fail_naming_it_with_last_lines(pinflow):
    run = pinflow("run", "crash.yml", "--stop-after", "3")
    assert run.returncode == 1
    assert "node 'crasher' failed: exit code 1" in run.stderr
    assert "RuntimeError: crasher failed on purpose" in run.stderr
    assert "node 'counter' failed" not in run.stderr


def test_node_ignoring_stop_is_terminated_and_reported(pinflow):
    run = pinflow("run", "stubborn.yml", "--stop-after", "1", "--grace", "1")
    assert run.returncode == 1
    assert "still running after STOP: sending SIGTERM" in run.stdout
    assert "node 'stubborn' failed: did not stop within the grace period (SIGTERM)" in run.stderr


def test_sigint_to_launcher_stops_the_run_gracefully(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pinflow", "run", str(DATAFLOWS / "stop.yml"),
         "--log-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PINFLOW_TEST_RESULTS": str(results)},
    )
    assert proc.stdout is not None
    started = threading.Event()

    def watch() -> None:
        for line in proc.stdout:
            if "started" in line:
                started.set()

    threading.Thread(target=watch, daemon=True).start()
    assert started.wait(30)
    proc.send_signal(2)
    assert proc.wait(timeout=30) == 0
    assert (results / "recorder.json").exists()


def test_two_dataflows_at_once_do_not_see_each_other(pinflow, tmp_path):
    results = []

    def one(label: str) -> None:
        sub = tmp_path / label
        sub.mkdir()
        env = {"PINFLOW_TEST_RESULTS": str(sub)}
        os.makedirs(sub, exist_ok=True)
        results.append((sub, pinflow("run", "stop.yml", "--stop-after", "3", env=env)))

    threads = [threading.Thread(target=one, args=(x,)) for x in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    import json

    seen_runs = []
    for folder, run in results:
        assert run.returncode == 0, run.output
        rec = json.loads((folder / "recorder.json").read_text())
        assert rec["runs"] == [rec["run_id"]]
        seen_runs.append(rec["run_id"])
    assert seen_runs[0] != seen_runs[1]


def test_every_payload_type_round_trips_with_dtype_and_shape(pinflow):
    run = pinflow("run", "types.yml")
    assert run.returncode == 0, run.output
    got = run.result("receiver")["got"]
    assert got["f32_2d"]["dtype"] == "float32" and got["f32_2d"]["shape"] == [3, 4]
    assert got["f32_2d"]["numpy"] == np.arange(12, dtype=np.float32).reshape(3, 4).tolist()
    assert got["f32_2d"]["arrow_type"] == "float"
    assert got["i64"]["values"] == [1, -2, 3] and got["i64"]["arrow_type"] == "int64"
    assert got["u16_3d"]["shape"] == [2, 3, 4] and got["u16_3d"]["dtype"] == "uint16"
    assert got["bool"]["values"] == [True, False, True] and got["bool"]["dtype"] == "bool"
    assert got["f16"]["values"] == [0.5, 1.5] and got["f16"]["arrow_type"] == "halffloat"
    assert got["big_endian"]["values"] == [1, 2] and got["big_endian"]["dtype"] == "int32"
    assert got["bytes"]["values"] == list(b"hello") and got["bytes"]["dtype"] == "uint8"
    assert got["arrow_i32"]["arrow_type"] == "int32" and got["arrow_i32"]["values"] == [1, 2, 3]
    assert got["arrow_nullable"]["values"] == [1, None, 3]
    assert got["arrow_str"]["values"] == ["a", "bc", None]
    assert got["arrow_struct"]["values"] == [{"x": 1, "label": "car"}, {"x": 2, "label": "dog"}]
    expected = np.arange(100_000, dtype=np.uint32).astype(np.uint8)
    assert got["large_u8"]["values"] == expected.tolist()
    assert got["noncontig"]["numpy"] == np.arange(20).reshape(4, 5)[:, ::2].tolist()
    if "torch_f32" in got:
        assert got["torch_f32"]["shape"] == [2, 3] and got["torch_f32"]["dtype"] == "float32"


def test_node_outside_a_dataflow_explains_how_to_start_it(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k != "PINFLOW_NODE"}
    proc = subprocess.run([sys.executable, "-c", "import pinflow; pinflow.Node()"],
                          capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode != 0
    assert "was not started by pinflow" in proc.stderr
    assert "pinflow run FILE" in proc.stderr


def test_timer_ticks_stay_on_their_grid_without_drift(pinflow):
    run = pinflow("run", "timer.yml", "--stop-after", "3")
    assert run.returncode == 0, run.output
    inputs = [e for e in run.result("recorder")["events"] if e["type"] == "INPUT"]
    assert all(e["value"] == [] for e in inputs), "a tick's value is empty, as dora's"
    ticks = [e["sent_ns"] for e in inputs]
    assert 45 <= len(ticks) <= 62
    period = 50_000_000
    assert all((t - ticks[0]) % period == 0 for t in ticks), "ticks are start + k * period"
    assert ticks == sorted(set(ticks))


def test_sending_on_an_undeclared_output_is_a_clear_error(pinflow):
    run = pinflow("run", "undeclared.yml")
    assert run.returncode == 1
    assert "node 'sender' has no output 'nope' (declared: data)" in run.stderr


def test_validate_reports_file_line_and_exits_2_without_traceback(pinflow, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("nodes:\n  - id: a\n    module: m\n    inputs:\n      x: b/y\n")
    run = pinflow("validate", str(bad))
    assert run.returncode == 2
    assert f"{bad}:5: node 'a' input 'x': no node 'b'" in run.stderr
    assert "Traceback" not in run.stderr


def test_nothing_is_delivered_after_stop(pinflow):
    run = pinflow("run", "after_stop.yml", "--stop-after", "2")
    assert run.returncode == 0, run.output
    watcher = run.result("watcher")
    assert watcher["stop"] == "MANUAL" and watcher["inputs_before"] > 20
    assert watcher["after"] == [], "STOP must be the last event"
    assert watcher["ended"] is True
