"""Hostile and broken peers inside a run's mesh, with real processes, zenoh sessions and shared
memory: nothing a peer sends crashes a node, and forged or repeated control messages
(releases, descriptors, end of stream) change nothing."""

from __future__ import annotations

import json

import pytest
from conftest import DATAFLOWS, BackgroundRun


def _no_tracebacks(run) -> None:
    assert "Traceback" not in run.output, run.output


def test_undecodable_messages_are_counted_and_never_reach_next(pinflow):
    run = pinflow("run", "hostile_malformed.yml")
    assert run.returncode == 0, run.output
    consumer = run.result("consumer")
    assert consumer["indices"] == [0, 1] and consumer["torn"] == 0
    producer = run.result("producer")
    assert consumer["malformed"] == producer["attacks"] == 24
    assert producer["malformed"] >= 1, "a release nested 5000 deep is counted where it lands"
    assert "dropped malformed message" in run.stdout
    _no_tracebacks(run)


def test_the_sender_refuses_what_no_receiver_can_decode_and_bad_metadata(pinflow):
    run = pinflow("run", "hostile_refusals.yml")
    assert run.returncode == 0, run.output
    outcome = run.result("producer")["outcome"]
    refused = {name: got for name, got in outcome.items() if got and got[0] == "PayloadError"}
    assert refused.keys() == outcome.keys(), outcome
    assert "longdouble" in outcome["longdouble"][1]
    assert "longdouble" in outcome["longdouble_loan"][1]
    assert "shape" in outcome["huge_shape_loan"][1]
    assert "nested deeper than 32 levels" in outcome["deep_metadata"][1]
    assert "keys must be strings" in outcome["int_key"][1] and "1" in outcome["int_key"][1]
    assert "keys must be strings" in outcome["nested_int_key"][1]
    assert "65536" in outcome["big_metadata"][1]
    consumer = run.result("consumer")
    assert consumer["indices"] == [0] and consumer["malformed"] == 0
    _no_tracebacks(run)


@pytest.mark.parametrize("attack", ["release", "replay", "eos"])
def test_forged_or_repeated_control_messages_change_nothing(pinflow, attack):
    run = pinflow("run", "hostile_control.yml", env={"ATTACK": attack})
    assert run.returncode == 0, run.output
    forger, victim, producer = (run.result(n) for n in ("forger", "victim", "producer"))
    assert forger["forged"] > 0, "the attack ran"
    assert producer["sent"] == 40 and producer["error"] is None
    assert victim["indices"] == list(range(40)), "no frame lost, none delivered twice"
    assert victim["torn"] == 0 and victim["overwritten"] == 0, "no held slot was reused"
    assert victim["kept"] == 3
    assert victim["closed_after"] == 40, "the input closed only after the producer's last frame"
    if attack == "release":
        assert producer["malformed"] > 0, "forged releases are counted where they land"
    else:
        assert victim["malformed"] > 0, "replayed descriptors and forged eos are counted"
    _no_tracebacks(run)


def test_a_descriptor_refused_because_its_segment_is_gone_still_frees_the_slot(pinflow):
    run = pinflow("run", "shm_segment_gone.yml")
    assert run.returncode == 0, run.output
    consumer = run.result("consumer")
    assert consumer["indices"] == [] and consumer["malformed"] == 12
    producer = run.result("producer")
    assert producer["error"] is None and producer["sent"] == 12, "no slot was lost for good"
    assert "does not exist" in run.stdout


def test_statistics_no_reader_can_use_are_dropped_by_launcher_top_and_stats(pinflow, tmp_path):
    """Reports nested 100,000 deep, not JSON, or of the wrong shape (nodes/stats_forger.py)
    are logged and dropped by each reader: the launcher keeps diagnosing from the real
    reports, and `top` and `stats` show the real ones; nothing raises in a zenoh callback."""
    with BackgroundRun(DATAFLOWS / "hostile_stats.yml", tmp_path, stop_after=8) as run:
        run_id = run.wait_started(30)
        top = pinflow("top", "--once", timeout=30)
        stats = pinflow("stats", "--json", "--run", run_id, timeout=30)
        returncode = run.wait(timeout=40)
    output = run.output
    assert returncode == 0, output
    assert "callback error" not in output and "Traceback" not in output, output
    assert f"launcher: dropped malformed message on pinflow/{run_id}/stats/" in output, output
    assert "backlog: node 'recorder' input 'numbers'" in output, output
    for shown in (top, stats):
        assert shown.returncode == 0, shown.output
        assert "callback error" not in shown.output and "Traceback" not in shown.output
    rows = [line.split()[1] for line in top.stdout.splitlines() if line.startswith(run_id[:6])]
    assert {"counter", "recorder"} <= set(rows), top.stdout
    nodes = json.loads(stats.stdout)["runs"][run_id]["nodes"]
    assert {"counter", "recorder"} <= set(nodes), stats.stdout
    for node_id, report in nodes.items():
        assert report["node"] == node_id and report["v"] == 1
        assert isinstance(report["inputs"], dict) and isinstance(report["waiting_frac"], float)
