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
    Column("p50 ms", "p50_ms", ".1f", 8),
    Column("p99 ms", "p99_ms", ".1f", 8),
    Column("max ms", "max_ms", ".1f", 8),
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
UNITS = ("RSS in MiB (max over the run); CPU in % of one core; pinned in MiB; "
         "frames/s: delivery rate of the 30 Hz run.")


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
    return "\n".join(lines)


def _device_line(report: dict[str, Any]) -> str:
    if report["device"] == "cpu":
        return f"NO GPU: measuring the CPU path ({report['no_gpu_reason']})"
    return f"GPU: latency is until the frame is usable on {report['device']}"


def _run_line(report: dict[str, Any]) -> str:
    machine = report["machine"]
    return (f"{report['frames']} frames of {report['frame_bytes']:,} B at {report['fps']} Hz; "
            f"{machine['cpu_count']} cores, {machine['ram_gib']} GiB, {machine['platform']}")


def _notes(report: dict[str, Any]) -> list[str]:
    """Lines under the table: latency ratios, bandwidth, gateways, what was skipped."""
    arms = report["arms"]
    notes = []
    base = next((a for a in arms if a["arm"] == "pinned" and a["p50_ms"]), None)
    if base:
        ratios = [f"{a['arm']} {a['p50_ms'] / base['p50_ms']:.2f}x" for a in arms
                  if a["p50_ms"] and a is not base]
        notes.append("p50 latency relative to pinflow pinned: " + ", ".join(ratios))
    bw = report.get("h2d_bandwidth")
    if bw:
        notes.append(f"H2D bandwidth: pinned {bw['pinned_gbps']:.1f} GB/s, pageable "
                     f"{bw['pageable_gbps']:.1f} GB/s ({bw['ratio']:.2f}x)")
    for arm in arms:
        if arm.get("gateway_cpu_pct") is not None:
            notes.append(f"{arm['arm']}: the wire gateways (launcher and daemon processes) used "
                         f"{arm['gateway_cpu_pct']:.0f}% of one core on top of prod/cons CPU%")
    for arm, why in report.get("skipped", {}).items():
        notes.append(f"{'cross-host' if arm == 'cross' else arm} arm skipped: {why}")
    return notes
