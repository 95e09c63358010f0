"""`pinflow bench` plumbing: a tiny run of every arm produces the table and stable JSON.
Timings are not asserted (machines are noisy); the benchmark itself reports them."""

import json
import subprocess

import pytest

from pinflow.tools import bench, netns


def test_tiny_bench_run_prints_every_arm_and_writes_json(pinflow, tmp_path):
    out = tmp_path / "bench.json"
    run = pinflow("bench", "--frames", "15", "--no-max-fps", "--json", str(out), timeout=240)
    assert run.returncode == 0, run.output
    first = run.stdout.splitlines()[0]
    assert first.startswith(("NO GPU: measuring the CPU path", "GPU:"))
    for label in ("pinflow pinned", "pinflow shared memory", "zenoh bytes",
                  "zenoh shm + caller-side pinning"):
        assert label in run.stdout
    report = json.loads(out.read_text())
    assert report["schema"] == 1 and report["frame_bytes"] == 8_294_400
    reason = netns.available()
    assert [a["arm"] for a in report["arms"]] == (
        ["pinned", "shm", "zbytes", "zshm"] + (["cross"] if reason is None else []))
    if reason is not None:
        assert report["skipped"] == {"cross": reason}
        assert f"cross-host arm skipped: {reason}" in run.stdout
    for arm in report["arms"]:
        assert arm["error"] is None
        assert arm["delivered"] + arm["dropped"] == 15
        assert arm["delivered"] > 0 and arm["p50_ms"] > 0 and arm["delivered_fps"] > 0
        assert len(arm["latencies_ms"]) == arm["delivered"]
        assert (arm["gateway_cpu_pct"] is None) == (arm["arm"] != "cross")
    pinned = report["arms"][0]
    assert pinned["pinned_mib"] > 0, "the pinned arm's pool shows up as pinned bytes"


def test_soak_reports_memory_at_start_and_end(pinflow, tmp_path):
    out = tmp_path / "soak.json"
    run = pinflow("bench", "--duration", "4", "--json", str(out), timeout=120)
    result = json.loads(out.read_text())
    assert set(result["producer_rss_mib"]) == {"start", "end"}
    assert result["pinned_mib"]["start"] > 0
    assert ("flat: yes" in run.stdout) == result["flat"]
    # Every frame is delivered or counted where it was dropped; nothing is lost uncounted.
    frames = result["accounting"]
    assert frames["frames"] == 120 and frames["sent"] + frames["dropped_pool_full"] == 120
    assert frames["delivered"] == result["delivered"] > 0
    assert frames["sent"] == (frames["delivered"] + frames["dropped_consumer_queue"]
                              + frames["lost"])
    assert frames["lost"] == 0 and "lost (counted nowhere): 0" in run.stdout


def test_cross_host_arm_measures_both_hosts_and_cleans_up():
    reason = netns.available()
    if reason is not None:
        pytest.skip(f"needs Linux network namespaces: {reason}")

    def namespaces() -> set[str]:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
        return {line.split()[0] for line in out.splitlines() if line.strip()}

    before = namespaces()
    report = bench.run(frames=30, max_frames=0, arms=["cross"])
    (arm,) = report["arms"]
    assert arm["error"] is None, arm["error"]
    assert arm["delivered"] + arm["dropped"] == 30 and arm["delivered"] > 0
    assert arm["p50_ms"] > 0 and arm["delivered_fps"] > 0
    # The consumer runs under the daemon in the other namespace: measured all the same.
    assert arm["consumer_rss_mib"] > 0 and arm["producer_rss_mib"] > 0
    assert arm["gateway_cpu_pct"] > 0, "the gateways' work is measured, not hidden"
    table = bench.render(report)
    assert "pinflow across hosts" in table and "cross: the wire gateways" in table
    assert namespaces() == before  # (no /dev/shm leftovers: conftest checks)


def test_cross_arm_asked_for_where_unavailable_reports_why(monkeypatch, tmp_path):
    monkeypatch.setattr(netns, "available", lambda: "no namespaces here (test)")
    assert bench.default_arms() == (["pinned", "shm", "zbytes", "zshm"],
                                    {"cross": "no namespaces here (test)"})
    arm = bench.measure_arm("cross", 10, 0, "cpu", tmp_path)
    assert arm.error == "cross-host arm unavailable: no namespaces here (test)"
    assert arm.delivered == 0 and arm.dropped == 10
