"""``pinflow top`` and ``pinflow stats``: what every dataflow on this machine is doing now.

Each node publishes one report a second on ``pinflow/<run>/stats/<node>`` (see
:mod:`pinflow.nodes.stats`; the report is ``pinflow.protocol.stats.StatsReport``, and one
that does not decode is logged and dropped). Runs are found through their socket folders
(``runs_dir()/<run id>/launcher.sock``) and count only while their launcher holds the run's
lock, so the folders a killed launcher left behind are skipped. Each run is joined with its
own loopback-only session at the launcher's socket: nothing here opens a socket that could
leave the machine, and one run never sees another's keys.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

import msgspec
import zenoh

from pinflow.errors import DescriptorError
from pinflow.protocol.keys import RunKeys, last_part
from pinflow.protocol.stats import STATS_REPORT, CopyStats, InputReport, PoolReport, StatsReport
from pinflow.spec.units import MIB
from pinflow.transport import liveness
from pinflow.transport.malformed import Malformed
from pinflow.transport.session import LAUNCHER_SOCKET, open_session, runs_dir, unix_endpoint

log = logging.getLogger("pinflow.top")

NO_RUNS = "no running pinflow dataflow on this machine"
STALE_S = 3.0
"""A node silent this long missed three reports: it exited or hangs, so top drops its row."""
ONCE_WAIT_S = 2.5
"""How long ``top --once`` listens: long enough for every node's once-a-second report."""
CLEAR = "\x1b[H\x1b[2J"



class RunStats(msgspec.Struct):
    """The latest report of each node of one run."""

    nodes: dict[str, StatsReport]


class Snapshot(msgspec.Struct):
    """What ``pinflow stats --json`` prints: ``{"runs": {run_id: {"nodes": {node_id:
    report}}}, "t": time_ns}``."""

    runs: dict[str, RunStats]
    t: int


def to_json(snapshot: Snapshot) -> str:
    """The snapshot as ``pinflow stats --json`` prints it (indented, keys in report order)."""
    return json.dumps(msgspec.to_builtins(snapshot), indent=2)


# -- finding runs -------------------------------------------------------------------------
def is_alive(run_id: str) -> bool:
    """True while a launcher holds the run's lock (False for a name that is no run id)."""
    try:
        return liveness.run_is_live(run_id)
    except ValueError:
        return False


def live_runs() -> list[str]:
    """Ids of the runs on this machine whose launcher is alive, sorted."""
    try:
        folders = list(runs_dir().iterdir())
    except OSError:  # no run ever started here
        return []
    return sorted(path.name for path in folders
                  if (path / LAUNCHER_SOCKET).exists() and is_alive(path.name))


# -- listening ----------------------------------------------------------------------------
class Watcher:
    """Joins runs and keeps the latest report of every node, stamped with when it came.

    zenoh delivers reports on its own threads, so one lock guards the reports.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[zenoh.Session, Any]] = {}
        self._reports: dict[str, dict[str, tuple[float, StatsReport]]] = {}
        self.malformed = Malformed("top", log)

    @property
    def runs(self) -> list[str]:
        with self._lock:
            return sorted(self._reports)

    def watch(self, run_ids: list[str]) -> None:
        """Join the runs not joined yet and leave the joined ones not listed (they ended)."""
        for run_id in [r for r in self._sessions if r not in run_ids]:
            self._leave(run_id)
        for run_id in run_ids:
            if run_id not in self._sessions:
                self._join(run_id)

    def _join(self, run_id: str) -> None:
        endpoint = unix_endpoint(runs_dir() / run_id / LAUNCHER_SOCKET)
        try:
            session = open_session(listen=[], connect=[endpoint])
        except zenoh.ZError:
            return  # the run ended between finding it and joining it
        with self._lock:
            self._reports[run_id] = {}
        subscriber = session.declare_subscriber(
            RunKeys(run_id).stats_all(), lambda sample: self._on_report(run_id, sample))
        self._sessions[run_id] = (session, subscriber)

    def _leave(self, run_id: str) -> None:
        session, subscriber = self._sessions.pop(run_id)
        with contextlib.suppress(zenoh.ZError):
            subscriber.undeclare()
        with contextlib.suppress(zenoh.ZError):
            session.close()
        with self._lock:
            self._reports.pop(run_id, None)

    def _on_report(self, run_id: str, sample: zenoh.Sample) -> None:
        try:
            report = STATS_REPORT.decode(sample.payload.to_bytes())
        except DescriptorError as exc:  # a stats view must never crash on one bad report
            self.malformed.refuse(sample.key_expr, exc)
            return
        with self._lock:
            if run_id in self._reports:
                self._reports[run_id][last_part(sample.key_expr)] = (time.monotonic(), report)

    def snapshot(self, max_age: float | None = None) -> Snapshot:
        """Latest report per node of every joined run; ``max_age`` drops silent nodes."""
        now = time.monotonic()
        with self._lock:
            runs = {
                run_id: RunStats({node: report for node, (seen, report) in sorted(nodes.items())
                                  if max_age is None or now - seen <= max_age})
                for run_id, nodes in sorted(self._reports.items())
            }
        return Snapshot(runs, time.time_ns())

    def close(self) -> None:
        for run_id in list(self._sessions):
            self._leave(run_id)


def collect(run_ids: list[str], seconds: float) -> Snapshot:
    """Listen to the given runs for ``seconds`` and return the latest report of each node."""
    watcher = Watcher()
    try:
        watcher.watch(run_ids)
        time.sleep(seconds)
        return watcher.snapshot()
    finally:
        watcher.close()


# -- rendering ----------------------------------------------------------------------------
_COLUMNS: list[tuple[str, int]] = [  # negative width: left-aligned; the total fits 120
    ("RUN", -6), ("NODE", -10), ("PORT", -13), ("SOURCE/POOL", -17), ("QUEUE", 5),
    ("OCC%", 4), ("RATE", 5), ("DONE", 5), ("DROP", 5), ("P50", 5), ("P99", 5),
    ("SLOTS", 5), ("PIN", 5), ("RSS", 5), ("CPU%", 4), ("WAIT%", 5),
]
LEGEND = ("RATE: msg/s in (inputs) or out (outputs); DONE, DROP: msg/s handed to the node, "
          "dropped; P50, P99: ms\nsender to delivery; QUEUE: now/size; OCC%: mean queue fill; "
          "SLOTS: in use/total; PIN, RSS: MiB")


def _fit(text: str, width: int) -> str:
    """Pad to the column, cutting long names with '~' so the table never wraps."""
    size = abs(width)
    if len(text) > size:
        text = text[:size - 1] + "~"
    return f"{text:<{size}}" if width < 0 else f"{text:>{size}}"


def _node_cell(node: str, machine: str | None, size: int) -> str:
    """``node@machine`` for nodes on other hosts; a long node id is cut before the machine
    is, so the table always says where a node runs."""
    if not machine:
        return node
    suffix = f"@{machine}"
    room = max(size - len(suffix), 2)
    return (node if len(node) <= room else node[:room - 1] + "~") + suffix


def _num(value: Any) -> str:
    """Few digits but never hiding a small non-zero rate or latency."""
    if value is None:
        return "-"
    value = float(value)
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _mib(value: Any) -> str:
    return "-" if value is None else _num(value / MIB)


def _size(nbytes: float) -> str:
    """1024-based, one decimal below 10: a 320x240 RGBA slot is 300K, 1080p is 7.9M."""
    for unit in ("B", "K", "M", "G"):
        if nbytes < 1024 or unit == "G":
            return f"{nbytes:.1f}{unit}" if unit != "B" and nbytes < 10 else f"{nbytes:.0f}{unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def _pool(pool: PoolReport | None) -> str:
    if pool is None:
        return "inline"
    kind = "pinned" if pool.pinned else "shm"
    return f"{kind} {pool.slots}x{_size(pool.slot_bytes)}"


def _pct(fraction: Any) -> str:
    return "-" if fraction is None else f"{100 * float(fraction):.0f}"


def _input_row(name: str, q: InputReport) -> list[str]:
    source = q.source.removeprefix("pinflow/")  # timers: timer/hz/30
    return [f"in {name}", source, f"{q.queued}/{q.size}", _pct(q.occupancy), _num(q.in_rate),
            _num(q.handled_rate), _num(q.drop_rate), _num(q.latency_p50_ms),
            _num(q.latency_p99_ms), ""]


def _port_rows(report: StatsReport) -> list[list[str]]:
    """One row per input and output, without the run, node and per-node columns."""
    rows = [_input_row(name, q) for name, q in sorted(report.inputs.items())]
    for name, out in sorted(report.outputs.items()):
        slots = f"{out.pool.in_use}/{out.pool.slots}" if out.pool else "-"
        rows.append([f"out {name}", _pool(out.pool), "", "", _num(out.out_rate), "", "",
                     "", "", slots])
    return rows or [["-", "", "", "", "", "", "", "", "", ""]]


def _notes(run_id: str, node: str, report: StatsReport) -> list[str]:
    """Counters that only matter when non-zero, so the table stays small."""
    where = f"{run_id[:6]} {node}"
    notes = []
    if report.restarts:
        notes.append(f"{where}: restarted {report.restarts} time(s)")
    for name, q in sorted(report.inputs.items()):
        if q.closed:
            notes.append(f"{where} in {name}: closed, its source ended")
    for name, out in sorted(report.outputs.items()):
        if out.dropped_full:
            notes.append(f"{where} out {name}: {out.dropped_full} message(s) dropped, "
                         "every slot was in use")
        if out.pool is not None and (out.pool.exhausted_waits or out.pool.timeouts):
            notes.append(f"{where} out {name}: waited for a free slot "
                         f"{out.pool.exhausted_waits} time(s), gave up "
                         f"{out.pool.timeouts} time(s)")
        if out.pools_created > 1:
            notes.append(f"{where} out {name}: {out.pools_created} pools created (the "
                         "message size changed)")
    if report.malformed:
        notes.append(f"{where}: {report.malformed} malformed message(s) rejected")
    return notes


def _device_line(run_id: str, node: str, device: str, d: CopyStats) -> str:
    failed = d.registration_failures
    return (f"{run_id[:6]} {node} {device}: {d.registrations} registration(s)"
            f"{f' ({failed} failed)' if failed else ''}, {d.copies} pinned "
            f"cop(ies), {d.pageable_copies} pageable, {_mib(d.bytes_copied)} "
            f"MiB copied, {d.in_flight} in flight")


def render(snapshot: Snapshot) -> str:
    """The snapshot as a table of at most 120 columns, one row per node input and output."""
    runs = snapshot.runs
    if not runs:
        return NO_RUNS
    nodes = sum(len(run.nodes) for run in runs.values())
    clock = time.strftime("%H:%M:%S", time.localtime(snapshot.t / 1e9))
    lines = [f"pinflow top  {clock}  {len(runs)} run(s), {nodes} node(s) reporting", ""]
    lines.append(" ".join(_fit(title, width) for title, width in _COLUMNS).rstrip())
    devices, notes, silent = [], [], []
    for run_id, run in runs.items():
        if not run.nodes:
            silent.append(f"run {run_id}: no statistics yet (nodes report once a second)")
        for node, report in run.nodes.items():
            for i, row in enumerate(_port_rows(report)):
                per_node = ["", "", "", ""] if i else [
                    _mib(report.pinned_bytes), _mib(report.rss_bytes),
                    _num(report.cpu_pct), _pct(report.waiting_frac)]
                name = _node_cell(node, report.machine, abs(_COLUMNS[1][1]))
                cells = zip([run_id[:6], name, *row, *per_node], _COLUMNS, strict=True)
                lines.append(" ".join(_fit(c, width) for c, (_, width) in cells).rstrip())
            devices += [_device_line(run_id, node, device, d)
                        for device, d in sorted(report.devices.items())]
            notes += _notes(run_id, node, report)
    if devices:
        lines += ["", "devices:", *(f"  {line}" for line in devices)]
    if notes:
        lines += ["", "notes:", *(f"  {line}" for line in notes)]
    lines += ["", *silent, LEGEND] if silent else ["", LEGEND]
    return "\n".join(lines)


# -- the commands -------------------------------------------------------------------------
def _write(out: TextIO, text: str) -> None:
    out.write(text)
    out.flush()


def top(refresh: float = 1.0, once: bool = False, out: TextIO | None = None) -> int:
    """Show every run's nodes, redrawn each ``refresh`` seconds until Ctrl-C (exit 0).

    Runs that start later are joined on the next redraw, ended ones dropped. ``once``
    listens :data:`ONCE_WAIT_S` and prints one table, for scripts and bug reports.
    """
    out = out or sys.stdout
    clear = CLEAR if out.isatty() else ""
    watcher = Watcher()
    try:
        if once:
            runs = live_runs()
            if runs:
                watcher.watch(runs)
                time.sleep(ONCE_WAIT_S)
            _write(out, (render(watcher.snapshot(STALE_S)) if runs else NO_RUNS) + "\n")
            return 0
        while True:
            watcher.watch(live_runs())
            if watcher.runs:
                frame = render(watcher.snapshot(STALE_S))
            else:
                frame = f"{NO_RUNS}; looking for one every {refresh:g} s (Ctrl-C quits)"
            _write(out, f"{clear}{frame}\n" if clear else f"{frame}\n\n")
            time.sleep(refresh)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `pinflow top | head`: the reader is gone, so are we
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return 0
    finally:
        watcher.close()
