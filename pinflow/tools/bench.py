"""``pinflow bench``: the 1080p RGBA @ 30 Hz flow over several transports, side by side.

Arms (same frames, same consumer work, one run; ratios matter, machines are noisy):
  pinned    pinflow, ``pinned=True`` loan API, device delivery (``device: cuda``)
  shm       pinflow, unpinned shared memory, same consumer
  zbytes    plain zenoh, payload inside the message, zenoh defaults
  zshm      zenoh shared memory + caller-side pinning (consumer copies into its own reused
            pinned buffer, then to the device): the workaround users have today
  cross     the ``shm`` flow split over two hosts: the camera on the launcher's host, the
            consumer on a ``pinflow daemon`` host, the two being network namespaces joined
            by a veth cable (:mod:`pinflow.tools.netns`; needs root, skipped where unavailable).
            Every frame crosses the wire as bytes: what a second machine costs

Latency is frame captured (producer clock, before rendering) -> usable on the target
device (device tensor whose copy completed; host array on CPU). Without CUDA, the first
line says so and the CPU path is measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from pinflow.errors import PinflowError
from pinflow.runtime.daemon import DaemonProcess
from pinflow.tools import netns
from pinflow.transport import torch_cuda
from pinflow.transport.cleanup import clean_dead_runs
from pinflow.transport.segment import shm_dir

ARMS = {
    "pinned": "pinflow pinned (loan API, device delivery)",
    "shm": "pinflow shared memory (unpinned)",
    "zbytes": "zenoh bytes (zenoh defaults)",
    "zshm": "zenoh shm + caller-side pinning",
    "cross": "pinflow across hosts (veth between network namespaces)",
}
FRAME_BYTES = 1920 * 1080 * 4
CROSS_MACHINE = "far"
"""The ``machine:`` of the cross arm's consumer, served by a daemon in namespace b."""
CROSS_PORT = 7447


def default_arms() -> tuple[list[str], dict[str, str]]:
    """Every arm that can run here, and the ones left out with why (the cross arm needs
    network namespaces: root and iproute2)."""
    reason = netns.available()
    if reason is None:
        return list(ARMS), {}
    return [arm for arm in ARMS if arm != "cross"], {"cross": reason}


@dataclass
class Sampler:
    """Samples CPU time and RSS of a process tree while an arm runs (psutil)."""

    roots: list[int]
    roles: dict[str, str]  # cmdline fragment -> role ("producer" / "consumer")
    cpu: dict[str, float] = field(default_factory=dict)
    history: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    rss_history: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    rss: dict[str, int] = field(default_factory=dict)
    rss_first: dict[str, int] = field(default_factory=dict)
    rss_last: dict[str, int] = field(default_factory=dict)
    pinned_bytes: int = 0
    pinned_first: int | None = None
    pinned_last: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _role(self, proc: psutil.Process) -> str | None:
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            return None
        return next((role for frag, role in self.roles.items() if frag in cmd), None)

    def run(self) -> None:
        roots = []
        for pid in self.roots:
            try:
                roots.append(psutil.Process(pid))
            except psutil.Error:
                continue
        while not self._stop.is_set():
            procs = []
            for root in roots:
                try:
                    procs += [root, *root.children(recursive=True)]
                except psutil.Error:
                    continue
            rss_now: dict[str, int] = {}
            for proc in procs:
                role = self._role(proc)
                if role is None:
                    continue
                try:
                    times, mem = proc.cpu_times(), proc.memory_info().rss
                except psutil.Error:
                    continue
                self.cpu[f"{role}:{proc.pid}"] = times.user + times.system
                self.rss[role] = max(self.rss.get(role, 0), mem)
                self.rss_first.setdefault(role, mem)
                self.rss_last[role] = mem
                rss_now[role] = rss_now.get(role, 0) + mem
            pinned = sum(p.stat().st_size for p in shm_dir().glob("pinflow-*.pinned")
                         if p.exists())
            self.pinned_bytes = max(self.pinned_bytes, pinned)
            if pinned:
                self.pinned_first = pinned if self.pinned_first is None else self.pinned_first
                self.pinned_last = pinned
            self.history.append((time.time(), dict(self.cpu)))
            self.rss_history.append((time.time(), rss_now))
            self._stop.wait(0.2)

    def cpu_pct(self, role: str, start: float, end: float) -> float | None:
        """CPU use of ``role`` between wall times ``start`` and ``end`` (the streaming
        window, so process start-up and imports do not count), in % of one core."""
        window = [(t, cpu) for t, cpu in self.history if start <= t <= end]
        if len(window) < 2:
            return None
        (t0, first), (t1, last) = window[0], window[-1]
        used = sum(v - first.get(k, 0.0) for k, v in last.items() if k.startswith(role + ":"))
        return 100 * used / (t1 - t0)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class ArmResult:
    """One transport's figures. Latencies in ms; CPU in % of one core; RSS in MiB."""

    arm: str
    label: str
    frames: int
    delivered: int
    dropped: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    producer_cpu_pct: float | None
    consumer_cpu_pct: float | None
    producer_rss_mib: float
    consumer_rss_mib: float
    pinned_mib: float
    max_fps: float | None
    h2d_ms_p50: float | None
    device: str
    error: str | None = None
    delivered_fps: float | None = None
    """Rate at which frames became usable in the 30 Hz run (first to last delivery)."""
    gateway_cpu_pct: float | None = None
    """Cross-host arm only: the launcher and the daemon together (both wire gateways, plus
    their supervision), on top of the producer and consumer columns."""
    latencies_ms: list[float] = field(default_factory=list)
    """Per delivered frame, in delivery order (for plots and your own statistics)."""


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _records(path: Path) -> list[dict[str, Any]]:
    """The per-frame records a consumer wrote (its closing summary left out)."""
    return [r for r in _lines(path) if "summary" not in r]


def _probe_summary(path: Path) -> dict[str, int]:
    """The latency probe's closing counts: received, dropped (queue), malformed."""
    return next((r["summary"] for r in _lines(path) if "summary" in r), {})


def _pinflow_yaml(arm: str, frames: int, fps: float, out: Path, device: str) -> str:
    pinned = arm == "pinned"
    rate = f"pinflow/timer/hz/{fps:g}" if fps > 0 else "pinflow/timer/hz/1000"
    delivery = f", device: {device}" if device != "cpu" else ""
    machine = f"\n    machine: {CROSS_MACHINE}" if arm == "cross" else ""
    return f"""nodes:
  - id: camera
    module: pinflow.nodes.camera
    args: --frames {frames} {'--pinned' if pinned else '--no-pinned'}
    inputs:
      tick: {{source: {rate}, queue_size: 1}}
    outputs:
      - id: image
        pinned: {str(pinned).lower()}
        slots: 4
        slot_bytes: {FRAME_BYTES}
  - id: probe
    module: pinflow.nodes.latency_probe{machine}
    args: --out {out}
    inputs:
      image: {{source: camera/image, queue_size: 2{delivery}}}
"""


def _run_arm(arm: str, frames: int, fps: float, device: str, work: Path) -> tuple[
        list[dict[str, Any]], Sampler, str | None, float]:
    """Run one arm once; returns (records, sampler, error, wall seconds)."""
    with contextlib.ExitStack() as stack:
        return _run_arm_in(stack, arm, frames, fps, device, work)


def _run_arm_in(stack: contextlib.ExitStack, arm: str, frames: int, fps: float, device: str,
                work: Path) -> tuple[list[dict[str, Any]], Sampler, str | None, float]:
    """_run_arm; what the arm sets up around its processes (the cross arm's namespaces and
    daemon) is undone by ``stack``, however the arm ends."""
    tag = f"{arm}-{'max' if fps <= 0 else int(fps)}"
    out = work / f"{tag}.jsonl"
    before = {p.name for p in Path("/dev/shm").glob("*.zenoh")}
    roots: list[int] = []
    if arm in ("pinned", "shm", "cross"):
        spec = work / f"{tag}.yml"
        spec.write_text(_pinflow_yaml(arm, frames, fps, out, device))
        cmd = [sys.executable, "-m", "pinflow", "run", str(spec), "--log-dir", str(work / "logs")]
        if arm == "cross":
            try:
                prefix, endpoint, daemon = _cross_host(stack, work, tag)
            except PinflowError as exc:  # no namespaces, or the daemon did not start
                return [], Sampler([], {}), str(exc), 0.0
            cmd = [*prefix, *cmd, "--connect", endpoint]
            roots.append(daemon)  # the consumer is the daemon's child
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)]
        roles = {"pinflow.nodes.camera": "producer", "pinflow.nodes.latency_probe": "consumer"}
        if arm == "cross":  # the wire gateways live in the launcher and the daemon
            roles |= {"-m pinflow run ": "gateway", "-m pinflow daemon ": "gateway"}
    else:
        sock = work / f"{tag}.sock"
        common = ["--mode", "bytes" if arm == "zbytes" else "shm", "--socket", str(sock),
                  "--frames", str(frames), "--fps", str(fps)]
        base = [sys.executable, "-m", "pinflow.tools.baselines"]
        procs = [
            subprocess.Popen([*base, "consumer", *common, "--device", device, "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT),
            subprocess.Popen([*base, "producer", *common],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT),
        ]
        roles = {"baselines producer": "producer", "baselines consumer": "consumer"}
    sampler = Sampler([p.pid for p in procs] + roots, roles)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    start = time.monotonic()
    error = None
    for index, proc in enumerate(procs):
        try:
            output, _ = proc.communicate(timeout=120 + frames / max(fps, 1))
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
            error = "timed out"
        (work / f"{tag}-{index}.out").write_bytes(output)  # what the processes printed
        if proc.returncode and error is None:
            error = output.decode(errors="replace").strip().splitlines()[-1:] or ["failed"]
            error = f"exit {proc.returncode}: {error[0]}"
    wall = time.monotonic() - start
    sampler.stop()
    thread.join(timeout=2.0)
    _remove_orphan_zenoh_files(before)
    return _records(out), sampler, error, wall


def _cross_host(stack: contextlib.ExitStack, work: Path, tag: str) -> tuple[
        list[str], str, int]:
    """Namespaces a and b with ``pinflow daemon --machine far`` listening in b; returns the
    launcher's command prefix (run it in a), the endpoint to --connect and the daemon's pid.
    ``stack`` stops the daemon and then removes the namespaces."""
    pair = stack.enter_context(netns.namespace_pair())
    endpoint = f"tcp/{pair.addr_b}:{CROSS_PORT}"
    daemon = DaemonProcess(CROSS_MACHINE, endpoint, log=work / f"{tag}-daemon.log",
                           log_dir=work / "logs", prefix=pair.exec_prefix(pair.b))
    stack.callback(_stop_daemon, daemon)
    return pair.exec_prefix(pair.a), endpoint, daemon.process.pid


def _stop_daemon(daemon: DaemonProcess) -> None:
    """A daemon that had to be killed leaves its pools to `pinflow clean`, done here."""
    if daemon.stop() != 0:
        clean_dead_runs()


def _remove_orphan_zenoh_files(before: set[str]) -> None:
    """zenoh's shared-memory backend can leave its files behind after its processes exit;
    remove the ones this arm created that no live process maps."""
    mapped = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            mapped.update(line.split()[-1] for line in maps.read_text().splitlines()
                          if line.endswith(".zenoh"))
        except OSError:
            continue
    for path in Path("/dev/shm").glob("*.zenoh"):
        if path.name not in before and str(path) not in mapped:
            path.unlink(missing_ok=True)


def _ms(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _rate(records: list[dict[str, Any]]) -> float | None:
    """Frames per second at which ``records`` became usable, first to last."""
    if len(records) < 2:
        return None
    span = (records[-1]["usable_ns"] - records[0]["usable_ns"]) / 1e9
    return (len(records) - 1) / span if span > 0 else None


def measure_arm(arm: str, frames: int, max_frames: int, device: str, work: Path,
                fps: float = 30.0) -> ArmResult:
    if arm == "cross" and (reason := netns.available()) is not None:
        return ArmResult(
            arm=arm, label=ARMS[arm], frames=frames, delivered=0, dropped=frames, p50_ms=None,
            p99_ms=None, max_ms=None, producer_cpu_pct=None, consumer_cpu_pct=None,
            producer_rss_mib=0.0, consumer_rss_mib=0.0, pinned_mib=0.0, max_fps=None,
            h2d_ms_p50=None, device=device, error=f"cross-host arm unavailable: {reason}")
    records, sampler, error, _wall = _run_arm(arm, frames, fps, device, work)
    lat = [(r["usable_ns"] - r["capture_ns"]) / 1e6 for r in records if r.get("capture_ns")]
    window = ((records[0]["capture_ns"] / 1e9, records[-1]["usable_ns"] / 1e9) if records
              else (0.0, 0.0))
    h2d = [r["h2d_ns"] / 1e6 for r in records if r.get("h2d_ns") is not None]
    max_fps = None
    if max_frames:
        fast, _s, _e, _w = _run_arm(arm, max_frames, 0, device, work)
        max_fps = _rate(fast)
    return ArmResult(
        arm=arm, label=ARMS[arm], frames=frames, delivered=len(records),
        dropped=frames - len(records),
        p50_ms=_ms(lat, 50), p99_ms=_ms(lat, 99), max_ms=max(lat) if lat else None,
        producer_cpu_pct=sampler.cpu_pct("producer", *window),
        consumer_cpu_pct=sampler.cpu_pct("consumer", *window),
        producer_rss_mib=sampler.rss.get("producer", 0) / 2**20,
        consumer_rss_mib=sampler.rss.get("consumer", 0) / 2**20,
        pinned_mib=(sampler.pinned_bytes if arm == "pinned" else
                    FRAME_BYTES if arm == "zshm" and device != "cpu" else 0) / 2**20,
        max_fps=max_fps, h2d_ms_p50=_ms(h2d, 50),
        device=records[0]["device"] if records else device, error=error, latencies_ms=lat,
        delivered_fps=_rate(records),
        gateway_cpu_pct=sampler.cpu_pct("gateway", *window) if arm == "cross" else None,
    )


_CAMERA_SUMMARY = re.compile(r"camera: summary frames=(\d+) sent=(\d+) dropped_pool_full=(\d+) "
                             r"ticks_missed=(\d+)")


def account(frames: int, camera: dict[str, int], probe: dict[str, int], delivered: int
            ) -> dict[str, int]:
    """Where every frame of a soak went. ``lost`` is what nothing counted: it must be 0."""
    sent = camera.get("sent", 0)
    dropped_queue = probe.get("dropped", 0)
    return {
        "frames": frames,
        "sent": sent,
        "dropped_pool_full": camera.get("dropped_pool_full", 0),
        "not_produced": frames - camera.get("frames", 0),
        "ticks_missed": camera.get("ticks_missed", 0),
        "dropped_consumer_queue": dropped_queue,
        "malformed": probe.get("malformed", 0),
        "delivered": delivered,
        "lost": sent - delivered - dropped_queue,
    }


def soak(duration: float) -> dict[str, Any]:
    """The pinned arm for ``duration`` seconds: memory must stay flat and every frame must
    be delivered or counted where it was dropped."""
    device, reason = _target_device()
    frames = int(duration * 30)
    with tempfile.TemporaryDirectory(prefix="pinflow-soak-") as tmp:
        work = Path(tmp)
        records, sampler, error, wall = _run_arm("pinned", frames, 30.0, device, work)
        output = (work / "pinned-30-0.out").read_text(errors="replace")
        probe = _probe_summary(work / "pinned-30.jsonl")
    match = _CAMERA_SUMMARY.search(output)
    camera = dict(zip(("frames", "sent", "dropped_pool_full", "ticks_missed"),
                      map(int, match.groups()), strict=True)) if match else {}
    if not match and error is None:
        error = "the camera printed no summary"
    # "start" is taken once the flow has streamed for a few seconds: before that, RSS grows
    # by imports and by the pool pages each process touches for the first time.
    start = records[0]["capture_ns"] / 1e9 + min(5.0, duration / 4) if records else 0.0
    end = records[-1]["usable_ns"] / 1e9 if records else 0.0
    window = [rss for t, rss in sampler.rss_history if start <= t <= end] or [{}]
    rows = {}
    for role in ("producer", "consumer"):
        first, last = window[0].get(role, 0), window[-1].get(role, 0)
        rows[f"{role}_rss_mib"] = {"start": first / 2**20, "end": last / 2**20}
    rows["pinned_mib"] = {"start": (sampler.pinned_first or 0) / 2**20,
                          "end": sampler.pinned_last / 2**20}
    flat = all(r["end"] - r["start"] <= max(8.0, 0.05 * r["start"]) for r in rows.values())
    frames_row = account(frames, camera, probe, len(records))
    return {"schema": 1, "duration_s": wall, "device": device, "no_gpu_reason": reason,
            "frames": frames, "delivered": len(records), "error": error, **rows, "flat": flat,
            "accounting": frames_row, "lost": frames_row["lost"]}


def render_soak(result: dict[str, Any]) -> str:
    lines = [f"soak: {result['delivered']}/{result['frames']} frames in "
             f"{result['duration_s']:.0f}s on {result['device']}"]
    for key in ("producer_rss_mib", "consumer_rss_mib", "pinned_mib"):
        row = result[key]
        lines.append(f"  {key:<18} start {row['start']:8.1f}  end {row['end']:8.1f}")
    a = result["accounting"]
    lines.append(f"  frames: {a['sent']} sent, {a['delivered']} delivered; dropped: "
                 f"{a['dropped_pool_full']} pool full (camera), {a['dropped_consumer_queue']} "
                 f"consumer queue; {a['not_produced']} not produced; {a['malformed']} malformed; "
                 f"{a['ticks_missed']} timer ticks missed")
    lines.append("  lost (counted nowhere): 0" if a["lost"] == 0
                 else f"  LOST (counted nowhere): {a['lost']}")
    lines.append("  flat: yes" if result["flat"] else "  flat: NO, memory grew")
    if result["error"]:
        lines.append(f"  ERROR {result['error']}")
    return "\n".join(lines)


def measure_h2d_bandwidth(nbytes: int = FRAME_BYTES, rounds: int = 100) -> dict[str, float]:
    """GB/s of host-to-device copies from a registered shared-memory mapping vs pageable
    memory, through pinflow's GPU runtime (torch's), registering on its registration thread."""
    from pinflow.tools.gpu_check import measure_h2d
    from pinflow.transport.torch_cuda import TorchRuntime

    pinned, pageable = measure_h2d(TorchRuntime(), 0, nbytes, rounds)
    return {"pinned_gbps": pinned, "pageable_gbps": pageable, "ratio": pinned / pageable}


def _target_device() -> tuple[str, str | None]:
    found = torch_cuda.probe()
    return ("cuda", None) if found.available else ("cpu", found.reason)


def run(frames: int, max_frames: int, arms: list[str],
        skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """Measure ``arms``; ``skipped`` (arm -> why, see :func:`default_arms`) goes in the
    report so the table can say what it left out."""
    device, reason = _target_device()
    with tempfile.TemporaryDirectory(prefix="pinflow-bench-") as tmp:
        results = []
        for arm in arms:
            print(f"  running {arm}: {ARMS[arm]} ...", file=sys.stderr, flush=True)
            results.append(measure_arm(arm, frames, max_frames, device, Path(tmp)))
    report: dict[str, Any] = {
        "schema": 1,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(),
                    "ram_gib": round(psutil.virtual_memory().total / 2**30, 1)},
        "device": device, "no_gpu_reason": reason, "frames": frames,
        "frame_bytes": FRAME_BYTES, "fps": 30, "arms": [asdict(r) for r in results],
        "h2d_bandwidth": measure_h2d_bandwidth() if device == "cuda" else None,
        "skipped": dict(skipped or {}),
    }
    return report


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def render(report: dict[str, Any]) -> str:
    lines = []
    if report["device"] == "cpu":
        lines.append(f"NO GPU: measuring the CPU path ({report['no_gpu_reason']})")
    else:
        lines.append(f"GPU: latency is until the frame is usable on {report['device']}")
    machine = report["machine"]
    lines.append(f"{report['frames']} frames of {report['frame_bytes']:,} B at "
                 f"{report['fps']} Hz; {machine['cpu_count']} cores, {machine['ram_gib']} GiB, "
                 f"{machine['platform']}")
    width = max([44, *(len(arm["label"]) + 1 for arm in report["arms"])])
    head = (f"{'transport':<{width}}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'deliv':>7}"
            f"{'drop':>6}{'frames/s':>9}{'prod CPU%':>10}{'cons CPU%':>10}{'prod RSS':>9}"
            f"{'cons RSS':>9}{'pinned':>8}{'max fps':>8}{'H2D ms':>8}")
    lines += [head, "-" * len(head)]
    for arm in report["arms"]:
        lines.append(
            f"{arm['label']:<{width}}{_fmt(arm['p50_ms']):>8}{_fmt(arm['p99_ms']):>8}"
            f"{_fmt(arm['max_ms']):>8}{arm['delivered']:>7}{arm['dropped']:>6}"
            f"{_fmt(arm.get('delivered_fps')):>9}"
            f"{_fmt(arm['producer_cpu_pct'], '.0f'):>10}{_fmt(arm['consumer_cpu_pct'], '.0f'):>10}"
            f"{arm['producer_rss_mib']:>9.0f}{arm['consumer_rss_mib']:>9.0f}"
            f"{arm['pinned_mib']:>8.0f}{_fmt(arm['max_fps'], '.0f'):>8}"
            f"{_fmt(arm['h2d_ms_p50'], '.2f'):>8}"
            + (f"   ERROR {arm['error']}" if arm["error"] else ""))
    base = next((a for a in report["arms"] if a["arm"] == "pinned" and a["p50_ms"]), None)
    if base:
        ratios = [f"{a['arm']} {a['p50_ms'] / base['p50_ms']:.2f}x" for a in report["arms"]
                  if a["p50_ms"] and a is not base]
        lines.append("p50 latency relative to pinflow pinned: " + ", ".join(ratios))
    bw = report.get("h2d_bandwidth")
    if bw:
        lines.append(f"H2D bandwidth: pinned {bw['pinned_gbps']:.1f} GB/s, pageable "
                     f"{bw['pageable_gbps']:.1f} GB/s ({bw['ratio']:.2f}x)")
    for arm in report["arms"]:
        if arm.get("gateway_cpu_pct") is not None:
            lines.append(f"{arm['arm']}: the wire gateways (launcher and daemon processes) used "
                         f"{arm['gateway_cpu_pct']:.0f}% of one core on top of prod/cons CPU%")
    for arm, why in report.get("skipped", {}).items():
        lines.append(f"{'cross-host' if arm == 'cross' else arm} arm skipped: {why}")
    lines.append("RSS in MiB (max over the run); CPU in % of one core; pinned in MiB; "
                 "frames/s: delivery rate of the 30 Hz run.")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Latency CDF per arm, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        raise SystemExit("--plot needs matplotlib: pip install 'pinflow[plot]'") from None
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm in report["arms"]:
        values = sorted(arm["latencies_ms"])
        if values:
            ax.plot(values, np.linspace(0, 1, len(values)), label=arm["label"])
    ax.set_xscale("log")
    ax.set_xlabel("latency, frame captured -> usable (ms, log scale)")
    ax.set_ylabel("fraction of frames")
    ax.set_title(f"1080p RGBA @ 30 Hz on {report['device']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
