"""``pinflow bench --duration S``: the pinned arm for S seconds. Memory must stay flat and
every frame must be delivered or counted where it was dropped."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from pinflow.tools.bench.arms import ARMS
from pinflow.tools.bench.report import FPS, SCHEMA, target_device
from pinflow.tools.bench.runner import run_arm

MIB = 2**20
_SENDER_SUMMARY = re.compile(r"sender: summary frames=(\d+) sent=(\d+) dropped_pool_full=(\d+) "
                             r"ticks_missed=(\d+)")
WARMUP_S = 5.0
"""Memory is compared from this long after the first frame (at most a quarter of the run):
before that, RSS grows by imports and by the pool pages each process touches first."""
FLAT_MIB, FLAT_SHARE = 8.0, 0.05
"""Growth allowed from start to end: this many MiB or this share of the start, the larger."""


def account(frames: int, sender: dict[str, int], probe: dict[str, int], delivered: int
            ) -> dict[str, int]:
    """Where every frame of a soak went. ``lost`` is what nothing counted: it must be 0."""
    sent = sender.get("sent", 0)
    dropped_queue = probe.get("dropped", 0)
    return {
        "frames": frames,
        "sent": sent,
        "dropped_pool_full": sender.get("dropped_pool_full", 0),
        "not_produced": frames - sender.get("frames", 0),
        "ticks_missed": sender.get("ticks_missed", 0),
        "dropped_consumer_queue": dropped_queue,
        "malformed": probe.get("malformed", 0),
        "delivered": delivered,
        "lost": sent - delivered - dropped_queue,
    }


def sender_summary(output: str) -> dict[str, int] | None:
    """The sender's closing counts, from the run's output; None if it printed none."""
    match = _SENDER_SUMMARY.search(output)
    if not match:
        return None
    return dict(zip(("frames", "sent", "dropped_pool_full", "ticks_missed"),
                    map(int, match.groups()), strict=True))


def soak(duration: float) -> dict[str, Any]:
    """The report ``--json`` writes (``schema: 1``)."""
    device, reason = target_device()
    frames = int(duration * FPS)
    with tempfile.TemporaryDirectory(prefix="pinflow-soak-") as tmp:
        run = run_arm(ARMS["pinned"], frames, float(FPS), device, Path(tmp))
    records, sampler, error = run.records, run.sampler, run.error
    sender = sender_summary(run.outputs[0] if run.outputs else "")
    if sender is None and error is None:
        error = "the sender printed no summary"
    start = records[0]["sent_ns"] / 1e9 + min(WARMUP_S, duration / 4) if records else 0.0
    end = records[-1]["usable_ns"] / 1e9 if records else 0.0
    window = [rss for t, rss in sampler.rss_history if start <= t <= end] or [{}]
    rows = {}
    for role in ("producer", "consumer"):
        first, last = window[0].get(role, 0), window[-1].get(role, 0)
        rows[f"{role}_rss_mib"] = {"start": first / MIB, "end": last / MIB}
    rows["pinned_mib"] = {"start": (sampler.pinned_first or 0) / MIB,
                          "end": sampler.pinned_last / MIB}
    flat = all(r["end"] - r["start"] <= max(FLAT_MIB, FLAT_SHARE * r["start"])
               for r in rows.values())
    frames_row = account(frames, sender or {}, run.probe_summary, len(records))
    return {"schema": SCHEMA, "duration_s": run.wall_s, "device": device,
            "no_gpu_reason": reason, "frames": frames, "delivered": len(records),
            "error": error, **rows, "flat": flat, "accounting": frames_row,
            "lost": frames_row["lost"]}


def passed(result: dict[str, Any]) -> bool:
    """Memory flat, no error, nothing lost uncounted: the command exits 0."""
    return bool(result["flat"] and not result["error"] and not result["lost"])


def render_soak(result: dict[str, Any]) -> str:
    lines = [f"soak: {result['delivered']}/{result['frames']} frames in "
             f"{result['duration_s']:.0f}s on {result['device']}"]
    for key in ("producer_rss_mib", "consumer_rss_mib", "pinned_mib"):
        row = result[key]
        lines.append(f"  {key:<18} start {row['start']:8.1f}  end {row['end']:8.1f}")
    a = result["accounting"]
    lines.append(f"  frames: {a['sent']} sent, {a['delivered']} delivered; dropped: "
                 f"{a['dropped_pool_full']} pool full (sender), {a['dropped_consumer_queue']} "
                 f"consumer queue; {a['not_produced']} not produced; {a['malformed']} malformed; "
                 f"{a['ticks_missed']} timer ticks missed")
    lines.append("  lost (counted nowhere): 0" if a["lost"] == 0
                 else f"  LOST (counted nowhere): {a['lost']}")
    lines.append("  flat: yes" if result["flat"] else "  flat: NO, memory grew")
    if result["error"]:
        lines.append(f"  ERROR {result['error']}")
    return "\n".join(lines)
