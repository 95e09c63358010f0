"""`pinflow bench` plumbing: a tiny run of every arm produces the table and stable JSON.
Timings are not asserted (machines are noisy); the benchmark itself reports them."""

import importlib.util
import json
import mmap
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO
from test_leftovers import live_run

from pinflow.tools import netns
from pinflow.tools.bench import arms, flows, measure, report, sampler, table

REPORT_KEYS = ["schema", "machine", "device", "no_gpu_reason", "frames", "frame_bytes", "fps",
               "arms", "h2d_bandwidth", "skipped"]
ARM_KEYS = ["arm", "label", "frames", "delivered", "dropped", "p50_ms", "p99_ms", "max_ms",
            "producer_cpu_pct", "consumer_cpu_pct", "producer_rss_mib", "consumer_rss_mib",
            "pinned_mib", "max_fps", "h2d_ms_p50", "device", "error", "delivered_fps",
            "gateway_cpu_pct", "latencies_ms"]
SOAK_KEYS = ["schema", "duration_s", "device", "no_gpu_reason", "frames", "delivered", "error",
             "producer_rss_mib", "consumer_rss_mib", "pinned_mib", "flat", "accounting", "lost"]
ACCOUNTING_KEYS = ["frames", "sent", "dropped_pool_full", "not_produced", "ticks_missed",
                   "dropped_consumer_queue", "malformed", "delivered", "lost"]
MIB = 2**20


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
    assert list(report) == REPORT_KEYS, "--json keeps schema 1: every key, in its order"
    assert report["schema"] == 1 and report["frame_bytes"] == 8_294_400
    reason = netns.available()
    assert [a["arm"] for a in report["arms"]] == (
        ["pinned", "shm", "zbytes", "zshm"] + (["cross"] if reason is None else []))
    if reason is not None:
        assert report["skipped"] == {"cross": reason}
        assert f"cross-host arm skipped: {reason}" in run.stdout
    for arm in report["arms"]:
        assert list(arm) == ARM_KEYS
        assert arm["label"] == arms.ARMS[arm["arm"]].label
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
    assert list(result) == SOAK_KEYS and list(result["accounting"]) == ACCOUNTING_KEYS
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
    measured = report.run(frames=30, max_frames=0, arms=["cross"])
    (arm,) = measured["arms"]
    assert arm["error"] is None, arm["error"]
    assert arm["delivered"] + arm["dropped"] == 30 and arm["delivered"] > 0
    assert arm["p50_ms"] > 0 and arm["delivered_fps"] > 0
    # The consumer runs under the daemon in the other namespace: measured all the same.
    assert arm["consumer_rss_mib"] > 0 and arm["producer_rss_mib"] > 0
    assert arm["gateway_cpu_pct"] > 0, "the gateways' work is measured, not hidden"
    text = table.render(measured)
    assert "pinflow across hosts" in text and "cross: the wire gateways" in text
    assert namespaces() == before  # (no /dev/shm leftovers: conftest checks)


def test_cross_arm_asked_for_where_unavailable_reports_why(monkeypatch, tmp_path):
    monkeypatch.setattr(netns, "available", lambda: "no namespaces here (test)")
    assert arms.default_arms() == (["pinned", "shm", "zbytes", "zshm"],
                                   {"cross": "no namespaces here (test)"})
    arm = measure.measure_arm("cross", 10, 0, "cpu", tmp_path)
    assert arm.error == "cross-host arm unavailable: no namespaces here (test)"
    assert arm.delivered == 0 and arm.dropped == 10


def test_the_arms_table_is_the_one_the_command_offers(pinflow):
    """`--arms` takes its choices from arms.ARMS: an arm added there is offered, and a name
    that is not there is refused by the parser, listing the real ones."""
    run = pinflow("bench", "--arms", "nosuch")
    assert run.returncode == 2
    assert "choose from " + ", ".join(repr(n) for n in arms.ARMS) in run.stderr


def test_a_work_folder_whose_path_is_yaml_syntax_is_measured(pinflow):
    """Each pinflow arm's dataflow names files in the bench's work folder (under TMPDIR); a
    path with ': ' in it once made that dataflow invalid YAML, and the arm failed."""
    tmp = Path(tempfile.mkdtemp(prefix="bench: "))  # short: socket paths live under it too
    try:
        out = tmp / "bench.json"
        run = pinflow("bench", "--arms", "shm", "--frames", "5", "--no-max-fps", "--json",
                      str(out), env={"TMPDIR": str(tmp)}, timeout=120)
        assert run.returncode == 0, run.output
        (arm,) = json.loads(out.read_text())["arms"]
        assert arm["error"] is None and arm["delivered"] > 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_dataflow_paths_reach_the_probe_word_for_word(tmp_path):
    from pinflow import spec

    out = tmp_path / "odd: name #1 'q'" / "out.jsonl"
    for arm in (a for a in arms.ARMS.values() if a.baseline is None):
        path = flows.write_dataflow(tmp_path / f"{arm.name}.yml", arm, 10, 30.0, out, "cuda")
        loaded = spec.load(path)
        camera, probe = loaded.nodes
        assert probe.args == ("--out", str(out))
        assert camera.outputs[0].pinned is arm.pinned
        (image,) = probe.inputs
        assert image.device == "cuda" and image.source == "camera/image"
        assert (probe.machine == flows.CROSS_MACHINE) is arm.cross_host


def test_pinned_bytes_are_the_arms_own_beside_another_run(pinflow, tmp_path):
    """Another pinflow run on the machine (here a 32 MiB pinned pool in the same folder) is
    not this benchmark's: the pinned column counts only the pool the arm's processes map."""
    out = tmp_path / "bench.json"
    with live_run("pinned_stream.yml", tmp_path):
        run = pinflow("bench", "--arms", "pinned", "--frames", "10", "--no-max-fps", "--json",
                      str(out), timeout=180)
    assert run.returncode == 0, run.output
    (arm,) = json.loads(out.read_text())["arms"]
    own = 4 * flows.FRAME_BYTES / MIB  # 4 slots; the pool's header page adds 4 KiB
    assert own <= arm["pinned_mib"] < own + 1, arm["pinned_mib"]


def test_zenoh_files_the_bench_did_not_map_are_left_alone(tmp_path):
    """zenoh's orphaned shared-memory files are removed only if an arm's processes mapped
    them and no live process maps them now."""
    names = {role: sampler.ZENOH_SHM_DIR / f"pftest-{secrets.token_hex(4)}-{role}.zenoh"
             for role in ("orphan", "held", "foreign")}
    try:
        for path in names.values():
            path.write_bytes(b"\0" * 4096)
        with open(names["held"], "r+b") as f, mmap.mmap(f.fileno(), 4096):
            removed = sampler.remove_orphan_zenoh_files({names["orphan"], names["held"]})
            assert removed == [names["orphan"]]
            assert names["held"].exists() and names["foreign"].exists()
    finally:
        for path in names.values():
            path.unlink(missing_ok=True)


def test_a_zenoh_file_someone_else_creates_during_an_arm_survives_it(tmp_path):
    """A file that appears in /dev/shm while an arm runs, unmapped (another program between
    creating and mapping it, or one that left it for later), is not the benchmark's."""
    foreign = sampler.ZENOH_SHM_DIR / f"pftest-{secrets.token_hex(4)}-foreign.zenoh"
    out = tmp_path / "bench.json"
    bench = subprocess.Popen(
        [sys.executable, "-m", "pinflow", "bench", "--arms", "zbytes", "--frames", "60",
         "--no-max-fps", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert bench.stderr is not None
        started = ""
        while "running zbytes" not in started:
            line = bench.stderr.readline()
            assert line, f"the bench ended before its arm started: {started}"
            started += line
        time.sleep(1.0)  # the arm is under way: its processes start, then stream for 2 s
        foreign.write_bytes(b"\0" * 4096)
        stdout, stderr = bench.communicate(timeout=120)
        assert bench.returncode == 0, stdout + stderr
        assert foreign.exists(), "the benchmark removed a zenoh file it never mapped"
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.communicate()
        foreign.unlink(missing_ok=True)


def test_plot_without_matplotlib_fails_before_measuring(pinflow, tmp_path):
    if importlib.util.find_spec("matplotlib") is not None:
        pytest.skip("matplotlib is installed here")
    run = pinflow("bench", "--arms", "zbytes", "--frames", "5", "--no-max-fps", "--plot",
                  str(tmp_path / "cdf.png"), timeout=60)
    assert run.returncode == 1
    assert "pinflow: error: --plot needs matplotlib: pip install 'pinflow[plot]'" in run.stderr
    assert "running" not in run.stderr, "nothing is measured when the plot cannot be drawn"


@pytest.mark.parametrize("args", [["--duration", "0"], ["--frames", "0"], ["--frames", "-3"],
                                  ["--duration", "0.01"]])
def test_counts_and_durations_that_measure_nothing_are_refused(pinflow, args):
    run = pinflow("bench", *args, timeout=30)
    assert run.returncode == 2, run.output
    assert "pinflow bench: error: argument" in run.stderr and args[0] in run.stderr


def test_the_table_puts_every_figure_under_its_column():
    arm = {key: None for key in ARM_KEYS} | {
        "arm": "pinned", "label": arms.ARMS["pinned"].label, "delivered": 300, "dropped": 0,
        "p50_ms": 3.26, "p99_ms": 61.24, "max_ms": 1234.5, "producer_rss_mib": 123.4,
        "consumer_rss_mib": 109.0, "pinned_mib": 31.6, "max_fps": 999.0}
    failed = arm | {"arm": "zbytes", "label": arms.ARMS["zbytes"].label, "error": "timed out"}
    text = table.render({
        "schema": 1, "machine": {"cpu_count": 2, "platform": "Linux", "python": "3.11",
                                 "ram_gib": 23.5},
        "device": "cpu", "no_gpu_reason": "no GPU (test)", "frames": 300,
        "frame_bytes": flows.FRAME_BYTES, "fps": 30, "arms": [arm, failed],
        "h2d_bandwidth": None, "skipped": {"cross": "no root (test)"}})
    lines = text.splitlines()
    head, rule, row, error_row = lines[2:6]
    assert len(rule) == len(head) == len(row) and error_row.endswith("   ERROR timed out")
    for column, value in [("p50 ms", "3.3"), ("p99 ms", "61.2"), ("max ms", "1234.5"),
                          ("deliv", "300"), ("prod CPU%", "-"), ("pinned", "32"),
                          ("max fps", "999"), ("H2D ms", "-")]:
        end = head.index(column) + len(column)  # right-aligned under its header
        assert row[:end].endswith(" " + value), (column, row)
    assert "p50 latency relative to pinflow pinned: zbytes 1.00x" in lines
    assert "cross-host arm skipped: no root (test)" in lines


def test_the_bench_package_ships_in_the_wheel():
    """pyproject lists its packages by hand: every package folder must be in the list."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    found = {".".join(("pinflow", *p.parent.relative_to(REPO / "pinflow").parts))
             for p in (REPO / "pinflow").rglob("__init__.py")}
    assert found <= listed, f"not in pyproject.toml [tool.setuptools] packages: {found - listed}"
