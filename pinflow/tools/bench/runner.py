"""Run one arm once: start its processes, sample them, wait with a deadline, collect what the
consumer recorded. What an arm sets up around its processes (the cross arm's namespaces and
daemon) is undone however the arm ends."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pinflow.errors import PinflowError
from pinflow.tools import netns
from pinflow.tools.bench import iox2
from pinflow.tools.bench.arms import Arm
from pinflow.tools.bench.flows import CROSS_MACHINE, write_dataflow
from pinflow.tools.bench.frames import FRAME_BYTES
from pinflow.tools.bench.sampler import Sampler, remove_orphan_zenoh_files
from pinflow.tools.daemon_process import DaemonProcess
from pinflow.transport.cleanup import clean_dead_runs

CROSS_PORT = 7447
PINFLOW_ROLES = {"pinflow.tools.bench.sender": "producer",
                 "pinflow.nodes.latency_probe": "consumer"}
GATEWAY_ROLES = {"-m pinflow run ": "gateway", "-m pinflow daemon ": "gateway"}
"""The cross arm's wire gateways live in the launcher and the daemon."""
BASELINE_ROLES = {"baselines producer": "producer", "baselines consumer": "consumer"}


@dataclass
class ArmRun:
    """What one run of an arm left: the consumer's per-frame records and closing counts,
    what each process printed, the samples, and the first error."""

    records: list[dict[str, Any]]
    probe_summary: dict[str, int]
    """The latency probe's closing counts: received, dropped (queue), malformed."""
    outputs: list[str]
    sampler: Sampler
    error: str | None
    wall_s: float


def run_arm(arm: Arm, frames: int, fps: float, device: str, work: Path,
            frame_bytes: int = FRAME_BYTES) -> ArmRun:
    """``fps`` 0: as fast as it goes (the max-fps run)."""
    with contextlib.ExitStack() as stack:
        return _run_arm_in(stack, arm, frames, fps, device, work, frame_bytes)


def _run_arm_in(stack: contextlib.ExitStack, arm: Arm, frames: int, fps: float, device: str,
                work: Path, frame_bytes: int) -> ArmRun:
    tag = f"{arm.name}-{frame_bytes}-{'max' if fps <= 0 else int(fps)}"
    out = work / f"{tag}.jsonl"
    roots: list[int] = []
    if arm.baseline is None:
        spec = write_dataflow(work / f"{tag}.yml", arm, frames, fps, out, device, frame_bytes)
        commands = [[sys.executable, "-m", "pinflow", "run", str(spec),
                     "--log-dir", str(work / "logs")]]
        roles = dict(PINFLOW_ROLES)
        if arm.cross_host:
            try:
                pair = stack.enter_context(netns.namespace_pair())
                endpoint = f"tcp/{pair.addr_b}:{CROSS_PORT}"
                daemon = _daemon(stack, pair, endpoint, work, tag)
            except PinflowError as exc:  # no namespaces, or the daemon did not start
                return ArmRun([], {}, [], Sampler([], {}), str(exc), 0.0)
            commands = [[*pair.exec_prefix(pair.a), *commands[0], "--connect", endpoint]]
            roots.append(daemon)  # the consumer is the daemon's child
            roles |= GATEWAY_ROLES
    else:
        base = [sys.executable, "-m", "pinflow.tools.baselines"]
        common = ["--mode", arm.baseline, "--frames", str(frames), "--fps", str(fps),
                  "--frame-bytes", str(frame_bytes)]
        consumer = [*base, "consumer", *common, "--device", device, "--out", str(out)]
        producer = [*base, "producer", *common]
        if arm.baseline == "memcpy":
            commands = [[*producer, "--out", str(out)]]
        elif arm.baseline == "iox2":
            iox2_prefix = f"pfb{secrets.token_hex(6)}_"
            iox2_root = iox2.run_root(work, iox2_prefix)
            stack.callback(iox2.remove_files, iox2_root, iox2_prefix)
            own = ["--iox2-root", str(iox2_root), "--iox2-prefix", iox2_prefix]
            commands = [[*consumer, *own], [*producer, *own]]
        elif arm.cross_host:
            try:
                pair = stack.enter_context(netns.namespace_pair())
            except PinflowError as exc:
                return ArmRun([], {}, [], Sampler([], {}), str(exc), 0.0)
            endpoint = ["--endpoint", f"tcp/{pair.addr_b}:{CROSS_PORT}"]
            commands = [[*pair.exec_prefix(pair.b), *consumer, *endpoint],
                        [*pair.exec_prefix(pair.a), *producer, *endpoint]]
        else:
            socket = ["--socket", str(work / f"{tag}.sock")]
            commands = [[*consumer, *socket], [*producer, *socket]]
        roles = dict(BASELINE_ROLES)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for cmd in commands]
    start = time.monotonic()
    with Sampler([p.pid for p in procs] + roots, roles) as sampler:
        outputs, error = _wait(procs, timeout=120 + frames / max(fps, 1))
    wall = time.monotonic() - start
    remove_orphan_zenoh_files(sampler.zenoh_files)
    lines = _json_lines(out)
    return ArmRun(records=[r for r in lines if "summary" not in r],
                  probe_summary=next((r["summary"] for r in lines if "summary" in r), {}),
                  outputs=outputs, sampler=sampler, error=error, wall_s=wall)


def _wait(procs: list[subprocess.Popen[bytes]], timeout: float) -> tuple[list[str], str | None]:
    """Each process's output, and what failed: a timeout, else the first non-zero exit (with
    the last line it printed)."""
    outputs, error = [], None
    for proc in procs:
        try:
            raw, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raw, _ = proc.communicate()
            error = "timed out"
        output = raw.decode(errors="replace")
        outputs.append(output)
        if proc.returncode and error is None:
            last = output.strip().splitlines()[-1:] or ["failed"]
            error = f"exit {proc.returncode}: {last[0]}"
    return outputs, error


def _json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _daemon(stack: contextlib.ExitStack, pair: netns.NamespacePair, endpoint: str, work: Path,
            tag: str) -> int:
    """``pinflow daemon --machine far`` listening on ``endpoint`` in namespace b; its pid.
    ``stack`` stops it before the namespaces go."""
    daemon = DaemonProcess(CROSS_MACHINE, endpoint, log=work / f"{tag}-daemon.log",
                           log_dir=work / "logs", prefix=pair.exec_prefix(pair.b))
    stack.callback(_stop_daemon, daemon)
    return daemon.process.pid


def _stop_daemon(daemon: DaemonProcess) -> None:
    """A daemon that had to be killed leaves its pools to `pinflow clean`, done here."""
    if daemon.stop() != 0:
        clean_dead_runs()
