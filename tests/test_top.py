"""``pinflow stats`` and ``pinflow top`` against real runs of the camera pipeline.

camera_small.yml ends after 30 frames (half a second), before the first once-a-second
report, so these tests run a variant that streams until the test stops it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DATAFLOWS, BackgroundRun

from pinflow.errors import DescriptorError
from pinflow.protocol.stats import STATS_REPORT
from pinflow.tools import top

NODES = {"camera", "detector", "gpu", "sink"}


@contextlib.contextmanager
def running_camera_flow(tmp_path: Path) -> Iterator[str]:
    """Start the camera pipeline in the background; yields its run id once it is live."""
    flow = tmp_path / "camera_live.yml"
    text = (DATAFLOWS / "camera_small.yml").read_text()
    assert "--frames 30" in text
    flow.write_text(text.replace("--frames 30", "--frames 0"))  # 0: until STOP
    with BackgroundRun(flow, tmp_path, stop_after=15) as run:  # SIGINT removes its files
        run_id = run.wait_started(20)
        deadline = time.monotonic() + 5
        while run_id not in top.live_runs():
            assert time.monotonic() < deadline, f"run {run_id} never looked alive"
            time.sleep(0.1)
        yield run_id


def _complete(snapshot: dict, run_id: str) -> bool:
    nodes = snapshot["runs"].get(run_id, {}).get("nodes", {})
    gpu = nodes.get("gpu", {}).get("inputs", {}).get("image", {})
    return set(nodes) >= NODES and (gpu.get("in_rate") or 0) > 0


def test_stats_json_reports_every_node_pool_rates_and_latency(pinflow, tmp_path):
    with running_camera_flow(tmp_path) as run_id:
        for _ in range(3):  # the first try can fall before every node's first report
            result = pinflow("stats", "--json", "--run", run_id, timeout=30)
            assert result.returncode == 0, result.output
            snapshot = json.loads(result.stdout)
            if _complete(snapshot, run_id):
                break
    assert set(snapshot["runs"]) == {run_id}
    nodes = snapshot["runs"][run_id]["nodes"]
    assert set(nodes) == NODES
    for node_id, report in nodes.items():
        assert report["node"] == node_id and report["run"] == run_id
        assert report["rss_bytes"] > 0 and report["v"] == 1

    image = nodes["camera"]["outputs"]["image"]
    pool = image["pool"]
    assert pool["slots"] == 6 and pool["pinned"] is True
    assert pool["slot_bytes"] >= 320 * 240 * 4
    assert 0 <= pool["in_use"] <= pool["slots"]
    assert image["out_rate"] > 0 and image["sent_shm"] > 0
    assert nodes["camera"]["pinned_bytes"] == 6 * pool["slot_bytes"]

    gpu = nodes["gpu"]["inputs"]["image"]
    assert gpu["source"] == "camera/image" and gpu["size"] == 8
    assert gpu["in_rate"] > 0 and gpu["handled_rate"] > 0
    assert 0 < gpu["latency_p50_ms"] <= gpu["latency_p99_ms"]
    assert nodes["sink"]["inputs"]["latency"]["latency_p50_ms"] > 0


def test_top_once_prints_a_table_naming_every_node(pinflow, tmp_path):
    with running_camera_flow(tmp_path) as run_id:
        result = pinflow("top", "--once", timeout=30)
    assert result.returncode == 0, result.output
    out = result.stdout
    rows = [line for line in out.splitlines() if line.startswith(run_id[:6])]
    assert {row.split()[1] for row in rows} == NODES, out
    assert any("out image" in row and "pinned 6x300K" in row for row in rows), out
    assert any("in image" in row and "camera/image" in row for row in rows), out
    assert "P50" in out and "SLOTS" in out
    assert "\x1b[" not in out, "no screen clearing when stdout is not a terminal"
    assert max(len(line) for line in out.splitlines()) <= 120, out


def test_stats_without_a_live_run_fails_clearly(pinflow):
    result = pinflow("stats", "--json", "--run", "no-such-run", "--wait", "0.5")
    assert result.returncode == 1
    assert "not running on this machine" in result.stderr or top.NO_RUNS in result.stderr
    if top.live_runs():
        pytest.skip("another pinflow run is alive on this machine")
    result = pinflow("stats", "--json", "--wait", "0.5")
    assert result.returncode == 1 and result.stdout == ""
    assert f"pinflow: error: {top.NO_RUNS}" in result.stderr
    if not top.live_runs():
        once = pinflow("top", "--once")
        assert once.returncode == 0 and top.NO_RUNS in once.stdout


def test_live_runs_skips_folders_whose_launcher_is_gone(tmp_path, monkeypatch):
    monkeypatch.setattr(top, "runs_dir", lambda: tmp_path / "runs")
    monkeypatch.setenv("PINFLOW_SHM_DIR", str(tmp_path / "shm"))
    (tmp_path / "shm").mkdir()
    for run_id in ("alive", "dead", "nolock", "nosocket"):
        (tmp_path / "runs" / run_id).mkdir(parents=True)
        if run_id != "nosocket":
            (tmp_path / "runs" / run_id / "launcher.sock").touch()
        if run_id != "nolock":
            (tmp_path / "shm" / f"pinflow-{run_id}.lock").touch()
    (tmp_path / "runs" / "not a run id").mkdir()
    fd = os.open(tmp_path / "shm" / "pinflow-alive.lock", os.O_RDWR)
    try:
        # What a live launcher holds; flock conflicts between open files, even in one process.
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert top.live_runs() == ["alive"]
    finally:
        os.close(fd)
    assert top.live_runs() == [], "a lock nobody holds means the launcher is gone"


REPORT = {
    "v": 1, "node": "a_very_long_node_name", "run": "0123456789ab", "pid": 1,
    "restarts": 2, "machine": None, "t": 0, "interval_s": 1.0,
    "inputs": {"an_input_with_a_long_name": {
        "source": "a_very_long_node_name/a_very_long_output", "queued": 3, "size": 8,
        "received": 10, "dropped": 2, "delivered": 8, "closed": True, "occupancy": 0.4,
        "in_rate": 1234.5, "handled_rate": 0.01, "drop_rate": 2.0,
        "latency_p50_ms": 0.123, "latency_p99_ms": 2345.6}},
    "outputs": {"frames": {
        "sent_inline": 0, "sent_shm": 9, "dropped_full": 4, "dropped_link": 0,
        "unreachable": 0, "pools_created": 1,
        "pool": {"slots": 4, "slot_bytes": 1920 * 1080 * 4, "free": 1, "in_use": 3,
                 "loaned": 0, "acquired_total": 9, "exhausted_waits": 5, "timeouts": 1,
                 "held_by": {"n": 3}, "pinned": False, "segment": "pinflow-x.y.z.1"},
        "sent": 9, "out_rate": 30.0}},
    "waiting_frac": 0.5, "pinned_bytes": 0,
    "devices": {"cuda:0": {"registrations": 1, "unregistrations": 0,
                           "registration_failures": 0, "unregistration_failures": 0,
                           "copies": 7, "pageable_copies": 2, "forgotten_copies": 0,
                           "registration_waits": 0, "bytes_copied": 3 << 20, "in_flight": 1}},
    "malformed": 1, "rss_bytes": 123 << 20, "private_bytes": 0, "cpu_pct": 12.5,
}
"""A report as a node publishes it, every field in the order of the wire."""


def test_render_fits_120_columns_and_lists_devices_and_notes():
    report = STATS_REPORT.decode(json.dumps(REPORT).encode())
    text = top.render(top.Snapshot({"0123456789ab": top.RunStats({"n": report}),
                                    "ba9876543210": top.RunStats({})}, time.time_ns()))
    assert max(len(line) for line in text.splitlines()) <= 120, text
    assert "shm 4x7.9M" in text and "3/4" in text and "3/8" in text
    assert "cuda:0: 1 registration(s), 7 pinned cop(ies), 2 pageable, 3.00 MiB copied" in text
    assert "4 message(s) dropped" in text and "1 malformed" in text and "closed" in text
    assert "restarted 2 time(s)" in text
    assert "run ba9876543210: no statistics yet" in text
    assert top.render(top.Snapshot({}, 0)) == top.NO_RUNS


def test_stats_json_prints_each_report_with_the_keys_and_order_it_was_published_with():
    report = STATS_REPORT.decode(json.dumps(REPORT).encode())
    snapshot = top.Snapshot({"0123456789ab": top.RunStats({"n": report})}, 7)
    printed = top.to_json(snapshot)
    assert printed == json.dumps({"runs": {"0123456789ab": {"nodes": {"n": REPORT}}}, "t": 7},
                                 indent=2)


@pytest.mark.parametrize("change", [
    {"inputs": [1]}, {"waiting_frac": "all"}, {"unknown": 1}, {"pid": None},
    {"outputs": {"frames": {"pool": 7}}},
    {"inputs": {"x": {**REPORT["inputs"]["an_input_with_a_long_name"], "source": 5}}},
])
def test_a_report_of_the_wrong_shape_does_not_decode(change):
    with pytest.raises(DescriptorError, match="stats report is invalid"):
        STATS_REPORT.decode(json.dumps({**REPORT, **change}).encode())
    for junk in (b"[" * 100_000 + b"]" * 100_000, b'{"node": ' + b"[" * 100_000 + b"}",
                 b"\xff", b"x" * (STATS_REPORT.max_bytes + 1)):
        with pytest.raises(DescriptorError, match="stats report"):
            STATS_REPORT.decode(junk)
