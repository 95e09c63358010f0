"""`pinflow bench` plumbing: a tiny run of every arm produces the table and stable JSON.
Timings are not asserted (machines are noisy); the benchmark itself reports them."""

import json


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
    assert [a["arm"] for a in report["arms"]] == ["pinned", "shm", "zbytes", "zshm"]
    for arm in report["arms"]:
        assert arm["error"] is None
        assert arm["delivered"] + arm["dropped"] == 15
        assert arm["delivered"] > 0 and arm["p50_ms"] > 0
        assert len(arm["latencies_ms"]) == arm["delivered"]
    pinned = report["arms"][0]
    assert pinned["pinned_mib"] > 0, "the pinned arm's pool shows up as pinned bytes"


def test_soak_reports_memory_at_start_and_end(pinflow, tmp_path):
    out = tmp_path / "soak.json"
    run = pinflow("bench", "--duration", "4", "--json", str(out), timeout=120)
    result = json.loads(out.read_text())
    assert set(result["producer_rss_mib"]) == {"start", "end"}
    assert result["pinned_mib"]["start"] > 0
    assert ("flat: yes" in run.stdout) == result["flat"]
