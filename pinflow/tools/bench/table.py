"""The benchmark report as a plain-text table, for a terminal and for a log file alike.

Columns are declared once (header, report key, number format, width); a value that is not
there prints as ``-``. Hand-set widths rather than rich: rich sizes a table to the terminal
(80 columns in a log file), so this 14-column table would be folded into unreadable slivers
there unless its width were set by hand anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Column:
    head: str
    key: str
    """The per-arm key in the report."""
    fmt: str
    width: int


COLUMNS = (
    Column("p50 ms", "p50_ms", ".2f", 8),
    Column("x floor", "p50_vs_floor", ".2f", 8),
    Column("p99 ms", "p99_ms", ".1f", 8),
    Column("max ms", "max_ms", ".1f", 8),
    Column("start ms", "startup_max_ms", ".1f", 9),
    Column("deliv", "delivered", "d", 7),
    Column("drop", "dropped", "d", 6),
    Column("frames/s", "delivered_fps", ".1f", 9),
    Column("prod CPU%", "producer_cpu_pct", ".0f", 10),
    Column("cons CPU%", "consumer_cpu_pct", ".0f", 10),
    Column("prod RSS", "producer_rss_mib", ".0f", 9),
    Column("cons RSS", "consumer_rss_mib", ".0f", 9),
    Column("pinned", "pinned_mib", ".0f", 8),
    Column("max fps", "max_fps", ".0f", 8),
    Column("H2D ms", "h2d_ms_p50", ".2f", 8),
)
LABEL_HEAD = "transport"
LABEL_MIN_WIDTH = 44
SWEEP_COLUMNS = (
    Column("p50 ms", "p50_ms", ".2f", 8),
    Column("x floor", "p50_vs_floor", ".2f", 8),
    Column("p99 ms", "p99_ms", ".2f", 8),
    Column("max fps", "max_fps", ".0f", 8),
    Column("read ms", "read_ms_p50", ".2f", 8),
)
UNITS = ("x floor: p50 over the floor arm's p50 in this run; start ms: worst latency of the "
         "first 100 frames; RSS in MiB (max over the run); CPU in % of one core; pinned in "
         "MiB; frames/s: delivery rate of the paced run.")


def cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render(report: dict[str, Any]) -> str:
    arms = report["arms"]
    lines = [_device_line(report), _run_line(report)]
    width = max([LABEL_MIN_WIDTH, *(len(arm["label"]) + 1 for arm in arms)])
    head = f"{LABEL_HEAD:<{width}}" + "".join(f"{c.head:>{c.width}}" for c in COLUMNS)
    lines += [head, "-" * len(head)]
    for arm in arms:
        row = f"{arm['label']:<{width}}" + "".join(
            f"{cell(arm.get(c.key), c.fmt):>{c.width}}" for c in COLUMNS)
        lines.append(row + (f"   ERROR {arm['error']}" if arm["error"] else ""))
    lines += _notes(report)
    lines.append(UNITS)
    if report.get("sweep"):
        lines += ["", *_sweep(report["sweep"])]
    return "\n".join(lines)


def _sweep(rows: list[dict[str, Any]]) -> list[str]:
    """One line per frame size, the sweep's arms side by side (p50, ratio, p99, max fps,
    page read)."""
    arms = list(dict.fromkeys(row["arm"] for row in rows))
    width = sum(c.width for c in SWEEP_COLUMNS)
    head = f"{'size sweep':<14}" + "".join(f"{arm:^{width}}" for arm in arms)
    sub = f"{'frame bytes':<14}" + "".join(f"{c.head:>{c.width}}" for _ in arms
                                           for c in SWEEP_COLUMNS)
    lines = [head, sub, "-" * len(sub)]
    for size in dict.fromkeys(row["frame_bytes"] for row in rows):
        by_arm = {row["arm"]: row for row in rows if row["frame_bytes"] == size}
        line = f"{size:<14,}"
        for arm in arms:
            row = by_arm.get(arm, {})
            line += "".join(f"{cell(row.get(c.key), c.fmt):>{c.width}}" for c in SWEEP_COLUMNS)
        errors = [f"{arm}: {row['error']}" for arm, row in by_arm.items() if row["error"]]
        lines.append(line + (f"   ERROR {'; '.join(errors)}" if errors else ""))
    lines.append("size sweep: the same run at each frame size (frames of 1024-pixel RGBA rows); "
                 "floor = one memcpy, copy = send_output, inplace = a loan with 16 bytes "
                 "written; read ms: of p50, the consumer's own read of one byte per page "
                 "(median), which grows with the frame whatever carries it.")
    return lines


def _device_line(report: dict[str, Any]) -> str:
    if report["device"] == "cpu":
        return f"NO GPU: measuring the CPU path ({report['no_gpu_reason']})"
    return f"GPU: latency is until the frame is usable on {report['device']}"


def _run_line(report: dict[str, Any]) -> str:
    machine = report["machine"]
    return (f"{report['frames']} frames of {report['frame_bytes']:,} B at {report['fps']:g} Hz; "
            f"{machine['cpu_count']} cores, {machine['ram_gib']} GiB, {machine['platform']}")


def _notes(report: dict[str, Any]) -> list[str]:
    """Lines under the table: the cross-host goals, bandwidth, gateways, what was skipped."""
    arms = report["arms"]
    notes = []
    by_name = {a["arm"]: a for a in arms}
    cross, bare = by_name.get("cross"), by_name.get("ztcp")
    if cross and bare and cross["p50_ms"] and bare["p50_ms"]:
        notes.append("cross vs ztcp (same frames over the same kind of veth): " + ", ".join(
            part for part in (
                f"p50 {cross['p50_ms'] / bare['p50_ms']:.2f}x",
                _ratio("max fps", cross["max_fps"], bare["max_fps"]),
                _cpu_vs(cross, bare)) if part))
    bw = report.get("h2d_bandwidth")
    if bw:
        notes.append(f"H2D bandwidth: pinned {bw['pinned_gbps']:.1f} GB/s, pageable "
                     f"{bw['pageable_gbps']:.1f} GB/s ({bw['ratio']:.2f}x)")
    for arm in arms:
        sent, got = arm.get("max_run_frames") or 0, arm.get("max_run_delivered") or 0
        if arm["max_fps"] and got < sent:
            notes.append(f"{arm['arm']}: max fps is the rate of the {got} of {sent} frames "
                         "delivered in the unthrottled run; the producer outran the path and "
                         "the rest were dropped on the way (oldest first, counted there)")
    for arm in arms:
        if arm.get("gateway_cpu_pct") is not None:
            notes.append(f"{arm['arm']}: the wire gateways (launcher and daemon processes) used "
                         f"{arm['gateway_cpu_pct']:.0f}% of one core on top of prod/cons CPU%")
    for arm, why in report.get("skipped", {}).items():
        notes.append(f"{'cross-host' if arm == 'cross' else arm} arm skipped: {why}")
    return notes


def _ratio(name: str, mine: float | None, theirs: float | None) -> str | None:
    return f"{name} {mine / theirs:.2f}x" if mine and theirs else None


def _cpu_vs(cross: dict[str, Any], bare: dict[str, Any]) -> str | None:
    """The gateways' CPU against what the bare put's two processes use in all."""
    gateways = cross.get("gateway_cpu_pct")
    ends = [bare.get("producer_cpu_pct"), bare.get("consumer_cpu_pct")]
    if gateways is None or None in ends:
        return None
    return f"gateway CPU {gateways:.0f}% vs {sum(ends):.0f}% (ztcp sender + receiver)"
