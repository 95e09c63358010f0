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
from dataclasses import asdict
from pathlib import Path

import pytest
from conftest import REPO
from test_leftovers import live_run

from pinflow.errors import PinflowError
from pinflow.tools import netns
from pinflow.tools.bench import arms, flows, frames, iox2, measure, report, runner, sampler, table

REPORT_KEYS = ["schema", "machine", "device", "no_gpu_reason", "frames", "frame_bytes", "fps",
               "arms", "h2d_bandwidth", "skipped", "sweep"]
ARM_KEYS = ["arm", "label", "frames", "delivered", "dropped", "p50_ms", "p99_ms", "max_ms",
            "producer_cpu_pct", "consumer_cpu_pct", "producer_rss_mib", "consumer_rss_mib",
            "pinned_mib", "max_fps", "h2d_ms_p50", "device", "error", "delivered_fps",
            "gateway_cpu_pct", "latencies_ms", "startup_max_ms", "p50_vs_floor", "frame_bytes",
            "max_run_frames", "max_run_delivered", "read_ms_p50"]
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
    for label in ("the floor", "pinflow pinned", "pinflow shared memory", "send_output",
                  "written in place", "zenoh bytes", "zenoh shm + caller-side pinning"):
        assert label in run.stdout
    report = json.loads(out.read_text())
    assert list(report) == REPORT_KEYS, "--json keeps schema 1: every key, in its order"
    assert report["schema"] == 1 and report["frame_bytes"] == 8_294_400
    assert report["sweep"] == [], "no --sizes: no sweep"
    reason = netns.available()
    no_iox2 = iox2.unavailable()
    assert [a["arm"] for a in report["arms"]] == (
        ["floor", "pinned", "shm", "copy", "inplace", "zbytes", "zshm"]
        + (["iox2"] if no_iox2 is None else []) + ["bare"]
        + (["ztcp", "cross"] if reason is None else []))
    assert report["skipped"] == ({} if no_iox2 is None else {"iox2": no_iox2}) | (
        {} if reason is None else {"ztcp": reason, "cross": reason})
    if reason is not None:
        assert f"cross-host arm skipped: {reason}" in run.stdout
    if no_iox2 is not None:
        assert f"iox2 arm skipped: {no_iox2}" in run.stdout
    floor = report["arms"][0]
    for arm in report["arms"]:
        assert list(arm) == ARM_KEYS
        assert arm["label"] == arms.ARMS[arm["arm"]].label
        assert arm["error"] is None
        assert arm["delivered"] + arm["dropped"] == 15
        assert arm["delivered"] > 0 and arm["p50_ms"] > 0 and arm["delivered_fps"] > 0
        assert len(arm["latencies_ms"]) == arm["delivered"]
        assert (arm["gateway_cpu_pct"] is None) == (arm["arm"] != "cross")
        assert arm["p50_vs_floor"] == pytest.approx(arm["p50_ms"] / floor["p50_ms"])
        assert arm["startup_max_ms"] == max(arm["latencies_ms"])  # all 15 are start-up
        assert arm["frame_bytes"] == 8_294_400
    assert floor["consumer_cpu_pct"] is None, "the floor is one process"
    pinned = report["arms"][1]
    assert pinned["pinned_mib"] > 0, "the pinned arm's pool shows up as pinned bytes"
    assert "x floor" in run.stdout.splitlines()[2]


def test_size_sweep_measures_the_floor_copy_and_loan_arms_at_each_size(pinflow, tmp_path):
    out = tmp_path / "bench.json"
    run = pinflow("bench", "--arms", "floor", "--frames", "8", "--no-max-fps",
                  "--sizes", "4KiB,1MiB", "--json", str(out), timeout=240)
    assert run.returncode == 0, run.output
    sweep = json.loads(out.read_text())["sweep"]
    assert [(row["frame_bytes"], row["arm"]) for row in sweep] == [
        (size, arm) for size in (4096, 2**20) for arm in ("floor", "copy", "inplace")]
    for row in sweep:
        assert list(row) == ARM_KEYS and row["error"] is None, row["error"]
        assert row["delivered"] > 0 and row["p50_ms"] > 0
        assert 0 < row["read_ms_p50"] <= row["p50_ms"], "the page read is part of latency"
        floor = next(r for r in sweep if r["arm"] == "floor"
                     and r["frame_bytes"] == row["frame_bytes"])
        assert row["p50_vs_floor"] == pytest.approx(row["p50_ms"] / floor["p50_ms"])
    assert "size sweep" in run.stdout and "1,048,576" in run.stdout


@pytest.mark.parametrize("sizes", ["1000", "4KiB,6KiB", "lots"])
def test_sizes_that_are_not_whole_rows_are_refused_before_measuring(pinflow, sizes):
    run = pinflow("bench", "--sizes", sizes, timeout=30)
    assert run.returncode == 2, run.output
    assert "argument --sizes" in run.stderr and "running" not in run.stderr


def test_frame_shapes_of_the_sweep():
    assert frames.shape_for(frames.FRAME_BYTES) == (1080, 1920, 4)
    assert frames.shape_for(32 * MIB) == (8192, 1024, 4)
    assert frames.parse_sizes(frames.DEFAULT_SIZES) == [4096, 65536, MIB, 8 * MIB, 32 * MIB]
    with pytest.raises(ValueError, match="multiple of 4 KiB"):
        frames.shape_for(4097)


def test_frames_are_rendered_before_timing_and_the_in_place_arm_writes_only_the_stamp():
    from pinflow.nodes import framing

    prepared = frames.prepared(frames.shape_for(64 * 1024))
    assert len(prepared) == frames.DISTINCT
    assert all(framing.verify(frame)[1] for frame in prepared), "copied frames verify"
    slot = prepared[2].copy()
    frames.stamp_only(slot, 7)
    assert framing.read_stamp(slot)[0] == 7
    assert (slot.reshape(-1)[framing.STAMP_BYTES:]
            == prepared[2].reshape(-1)[framing.STAMP_BYTES:]).all()
    assert frames.touch_pages(slot) >= 0


def test_startup_latency_is_the_worst_of_the_first_hundred_frames(monkeypatch, tmp_path):
    """The start-up column reads the first STARTUP_FRAMES latencies only: a later spike is
    the max column's, not start-up's."""
    lat = [50.0] + [1.0] * 99 + [900.0]
    start = time.time_ns()
    records = [{"frame": i, "sent_ns": start, "usable_ns": start + int(ms * 1e6),
                "h2d_ns": None, "device": "cpu"} for i, ms in enumerate(lat)]
    run = runner.ArmRun(records, {}, [], sampler.Sampler([], {}), None, 1.0)
    monkeypatch.setattr(measure, "run_arm", lambda *args, **kw: run)
    result = measure.measure_arm("zbytes", len(lat), 0, "cpu", tmp_path)
    assert result.startup_max_ms == 50.0 and result.max_ms == 900.0


def test_max_fps_says_how_many_frames_of_the_unthrottled_run_it_counts(monkeypatch, tmp_path):
    """A producer that outruns the path (the cross arm's, flooding the wire gateway) gets
    only some frames through: max fps is their rate, and the table says so."""
    start = time.time_ns()
    records = [{"frame": i, "sent_ns": start, "usable_ns": start + i * 10_000_000,
                "h2d_ns": None, "device": "cpu"} for i in range(30)]
    run = runner.ArmRun(records, {}, [], sampler.Sampler([], {}), None, 1.0)
    monkeypatch.setattr(measure, "run_arm", lambda *args, **kw: run)
    result = measure.measure_arm("zbytes", 30, 100, "cpu", tmp_path)
    assert (result.max_run_frames, result.max_run_delivered) == (100, 30)
    assert result.max_fps == pytest.approx(100.0)
    text = table.render(_report([asdict(result)]))
    assert ("zbytes: max fps is the rate of the 30 of 100 frames delivered in the unthrottled "
            "run") in text
    every = asdict(result) | {"max_run_delivered": 100}
    assert "max fps is the rate" not in table.render(_report([every])), (
        "every frame came: nothing to say")


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
    measured = report.run(frames=30, max_frames=0, arms=["ztcp", "cross"])
    bare, arm = measured["arms"]
    assert bare["error"] is None, bare["error"]
    assert bare["delivered"] > 0 and bare["producer_cpu_pct"] > 0 and bare["consumer_cpu_pct"] > 0
    assert arm["error"] is None, arm["error"]
    assert arm["delivered"] + arm["dropped"] == 30 and arm["delivered"] > 0
    assert arm["p50_ms"] > 0 and arm["delivered_fps"] > 0
    # The consumer runs under the daemon in the other namespace: measured all the same.
    assert arm["consumer_rss_mib"] > 0 and arm["producer_rss_mib"] > 0
    assert arm["gateway_cpu_pct"] > 0, "the gateways' work is measured, not hidden"
    text = table.render(measured)
    assert "pinflow across hosts" in text and "cross: the wire gateways" in text
    assert "cross vs ztcp (same frames over the same kind of veth): p50 " in text
    assert namespaces() == before  # (no /dev/shm leftovers: conftest checks)


def test_cross_arm_asked_for_where_unavailable_reports_why(monkeypatch, tmp_path):
    monkeypatch.setattr(netns, "available", lambda: "no namespaces here (test)")
    why = "no namespaces here (test)"
    monkeypatch.setattr(iox2, "unavailable", lambda: None)
    assert arms.default_arms() == (["floor", "pinned", "shm", "copy", "inplace", "zbytes",
                                    "zshm", "iox2", "bare"], {"ztcp": why, "cross": why})
    for name in ("ztcp", "cross"):
        arm = measure.measure_arm(name, 10, 0, "cpu", tmp_path)
        assert arm.error == f"cross-host arm unavailable: {why}"
        assert arm.delivered == 0 and arm.dropped == 10


def _iox2_leftovers() -> set[str]:
    """The /dev/shm names of the prefix every bench run's iceoryx2 files start with."""
    return {p.name for p in iox2.SHM_DIR.glob("pfb*")}


def test_iox2_arm_delivers_every_frame_intact_and_leaves_no_files(monkeypatch, tmp_path):
    """A real iceoryx2 producer and consumer, the 30 Hz run and the unthrottled one: every
    frame arrives (the consumer exits non-zero if a checked frame is not intact), figures
    like every other arm's, and each run's iceoryx2 files are gone afterwards."""
    if iox2.unavailable() is not None:
        pytest.skip(iox2.unavailable())
    removed: list[list[Path]] = []
    roots: list[Path] = []
    remove_files = iox2.remove_files

    def remove_and_note(root: Path, prefix: str) -> list[Path]:
        assert root.exists(), "iceoryx2 worked under the run's own root folder"
        roots.append(root)
        removed.append(remove_files(root, prefix))
        return removed[-1]

    monkeypatch.setattr(iox2, "remove_files", remove_and_note)
    shm_before, tmp_before = _iox2_leftovers(), Path("/tmp/iceoryx2").exists()
    result = measure.measure_arm("iox2", 12, 12, "cpu", tmp_path)
    assert result.error is None, result.error
    assert list(asdict(result)) == ARM_KEYS
    assert result.label == "iceoryx2 0.10 loan_slice_uninit + one copy in"
    assert result.delivered == 12 and result.dropped == 0 and result.p50_ms > 0
    assert result.max_fps > 0 and result.startup_max_ms == max(result.latencies_ms)
    assert result.producer_rss_mib > 0 and result.consumer_rss_mib > 0
    assert len(removed) == 2 and all(removed), "each run's own /dev/shm files were removed"
    assert _iox2_leftovers() == shm_before
    assert not any(root.exists() for root in roots), "each run's root folder is removed"
    assert Path("/tmp/iceoryx2").exists() == tmp_before, "iceoryx2's default root unused"


def test_bare_python_arm_delivers_every_frame_intact_and_leaves_no_files(tmp_path):
    """Two plain Python processes over a memfd ring and a unix socket, paced and unthrottled:
    every frame arrives (the consumer exits non-zero if a checked frame is not intact; the
    unthrottled run outruns the 4-slot ring, so the producer waits for credits), and the
    socket is gone afterwards (the ring is an anonymous memfd: no file to leave)."""
    result = measure.measure_arm("bare", 12, 12, "cpu", tmp_path)
    assert result.error is None, result.error
    assert list(asdict(result)) == ARM_KEYS
    assert result.label == arms.ARMS["bare"].label
    assert result.delivered == 12 and result.dropped == 0 and result.p50_ms > 0
    assert result.max_fps > 0 and result.max_run_delivered == 12
    assert result.producer_rss_mib > 0 and result.consumer_rss_mib > 0
    assert not list(tmp_path.glob("*.sock")), "the consumer removes its socket"


def test_iox2_arm_without_iceoryx2_is_skipped_or_refused_naming_the_extra(monkeypatch, capsys):
    monkeypatch.setattr(iox2, "unavailable", lambda: iox2.INSTALL)
    chosen, skipped = arms.default_arms()
    assert "iox2" not in chosen and skipped["iox2"] == iox2.INSTALL
    assert "pip install 'pinflow[bench]'" in iox2.INSTALL
    with pytest.raises(PinflowError, match=r"the iox2 arm cannot run: iceoryx2 is not "
                                           r"installed: pip install 'pinflow\[bench\]'"):
        arms.require_packages(["floor", "iox2"])
    arms.require_packages(["floor", "copy"])
    from pinflow import cli

    assert cli.main(["bench", "--arms", "iox2", "--frames", "3", "--no-max-fps"]) == 1
    err = capsys.readouterr().err
    assert "pinflow: error: the iox2 arm cannot run" in err and "running" not in err


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
        sender, probe = loaded.nodes
        assert probe.args == ("--out", str(out), "--stamp", "sent_ns", "--verify-every",
                              "0" if arm.how == "inplace" else "30")
        assert sender.outputs[0].pinned is arm.pinned
        assert ("--how", arm.how) == sender.args[:2]
        (image,) = probe.inputs
        assert image.device == "cuda" and image.source == "sender/image"
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
    own = 4 * frames.FRAME_BYTES / MIB  # 4 slots; the pool's header page adds 4 KiB
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
                                  ["--duration", "0.01"], ["--fps", "0"], ["--fps", "-30"],
                                  ["--fps", "20000"]])
def test_counts_and_durations_that_measure_nothing_are_refused(pinflow, args):
    run = pinflow("bench", *args, timeout=30)
    assert run.returncode == 2, run.output
    assert "pinflow bench: error: argument" in run.stderr and args[0] in run.stderr


def test_fps_sets_the_paced_runs_rate(pinflow, tmp_path):
    out = tmp_path / "bench.json"
    run = pinflow("bench", "--arms", "floor", "copy", "--frames", "20", "--fps", "200",
                  "--no-max-fps", "--json", str(out), timeout=120)
    assert run.returncode == 0, run.output
    report = json.loads(out.read_text())
    assert report["fps"] == 200.0
    assert "20 frames of 8,294,400 B at 200 Hz;" in run.stdout
    copy = report["arms"][1]
    assert copy["error"] is None and copy["delivered"] + copy["dropped"] == 20
    flow = flows.dataflow(arms.ARMS["copy"], 20, 200.0, tmp_path / "o.jsonl", "cpu")
    sender = next(n for n in flow["nodes"] if "tick" in n.get("inputs", {}))
    assert sender["inputs"]["tick"]["source"] == "pinflow/timer/hz/200"


def test_fps_with_the_soak_is_refused(pinflow):
    run = pinflow("bench", "--duration", "5", "--fps", "60", timeout=30)
    assert run.returncode == 1, run.output
    assert "--fps sets the rate of the arms' runs" in run.stderr


def _report(arms_: list[dict], skipped: dict[str, str] | None = None) -> dict:
    """A report as ``report.run`` returns it, around ``arms_``."""
    return {"schema": 1, "machine": {"cpu_count": 2, "platform": "Linux", "python": "3.11",
                                     "ram_gib": 23.5},
            "device": "cpu", "no_gpu_reason": "no GPU (test)", "frames": 300,
            "frame_bytes": frames.FRAME_BYTES, "fps": 30, "arms": arms_,
            "h2d_bandwidth": None, "skipped": skipped or {}}


def test_the_table_puts_every_figure_under_its_column():
    arm = {key: None for key in ARM_KEYS} | {
        "arm": "pinned", "label": arms.ARMS["pinned"].label, "delivered": 300, "dropped": 0,
        "p50_ms": 3.26, "p50_vs_floor": 2.5, "startup_max_ms": 40.04, "p99_ms": 61.24,
        "max_ms": 1234.5, "producer_rss_mib": 123.4, "consumer_rss_mib": 109.0,
        "pinned_mib": 31.6, "max_fps": 999.0}
    failed = arm | {"arm": "zbytes", "label": arms.ARMS["zbytes"].label, "error": "timed out"}
    text = table.render(_report([arm, failed], skipped={"cross": "no root (test)"}))
    lines = text.splitlines()
    head, rule, row, error_row = lines[2:6]
    assert len(rule) == len(head) == len(row) and error_row.endswith("   ERROR timed out")
    for column, value in [("p50 ms", "3.26"), ("x floor", "2.50"), ("p99 ms", "61.2"),
                          ("max ms", "1234.5"), ("start ms", "40.0"),
                          ("deliv", "300"), ("prod CPU%", "-"), ("pinned", "32"),
                          ("max fps", "999"), ("H2D ms", "-")]:
        end = head.index(column) + len(column)  # right-aligned under its header
        assert row[:end].endswith(" " + value), (column, row)
    assert "cross-host arm skipped: no root (test)" in lines


def test_the_bench_package_ships_in_the_wheel():
    """pyproject lists its packages by hand: every package folder must be in the list."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    found = {".".join(("pinflow", *p.parent.relative_to(REPO / "pinflow").parts))
             for p in (REPO / "pinflow").rglob("__init__.py")}
    assert found <= listed, f"not in pyproject.toml [tool.setuptools] packages: {found - listed}"
