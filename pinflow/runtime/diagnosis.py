"""Which side of an edge is the bottleneck, from the nodes' live statistics.

Seed 001 diagnosed a starved GPU pipeline by plotting queue occupancy and both rates by
hand. The launcher does it continuously: an input whose queue is near full and dropping
is consumer-bound (backlog); an input that sits near empty while its node waits, fed by a
producer that is busy all the time, is producer-bound (starvation). A producer that mostly
waits (a camera on a 30 Hz timer) is rate-limited by design, not a bottleneck. A producer
whose every slot is held by consumers looks busy and its consumers idle, but the consumer
that keeps the slots is the bottleneck (slots held), and is named as such.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

FULL = 0.8
EMPTY = 0.1
CONSUMER_WAITING = 0.5
PRODUCER_BUSY = 0.2  # producer waiting fraction below which it works flat out
REPEAT_S = 60.0


@dataclass(frozen=True)
class Finding:
    node: str
    input: str
    kind: str  # "consumer-bound" or "producer-bound"
    message: str


def diagnose(reports: dict[str, dict[str, Any]]) -> list[Finding]:
    """Findings for every input of every node, given each node's latest stats report."""
    findings = []
    for node_id, report in reports.items():
        for name, inp in report.get("inputs", {}).items():
            source = inp.get("source", "")
            if source.startswith("pinflow/") or inp.get("closed"):
                continue
            producer_id, _, output = source.partition("/")
            producer = reports.get(producer_id)
            out_rate = (producer or {}).get("outputs", {}).get(output, {}).get("out_rate")
            produced = out_rate if out_rate is not None else inp.get("in_rate", 0.0)
            handled = inp.get("handled_rate", 0.0)
            where = f"node '{node_id}' input '{name}' (from '{source}')"
            held = _slots_held(producer, output)
            if held is not None:
                if node_id not in held["worst"]:
                    continue  # another consumer holds the slots: neither side is to blame
                findings.append(Finding(node_id, name, "consumer-bound", (
                    f"slots held: {where}: consumers hold all {held['slots']} slots of "
                    f"'{source}' ({held['holders']}); '{producer_id}' {held['effect']}; the "
                    f"consumer '{node_id}' is the bottleneck: it keeps received values (drop "
                    "them or call event.release() sooner, or raise `slots` on the output)")))
            elif inp.get("occupancy", 0) >= FULL and inp.get("drop_rate", 0) > 0:
                findings.append(Finding(node_id, name, "consumer-bound", (
                    f"backlog: {where}: '{source}' produces {produced:.1f} msg/s, "
                    f"'{node_id}' handles {handled:.1f} msg/s and drops "
                    f"{inp['drop_rate']:.1f} msg/s (queue {inp.get('queued')}/{inp.get('size')}"
                    f" full); the consumer '{node_id}' is the bottleneck")))
            elif (producer is not None and inp.get("occupancy", 1) <= EMPTY
                  and report.get("waiting_frac", 0) >= CONSUMER_WAITING
                  and producer.get("waiting_frac", 1) <= PRODUCER_BUSY):
                busy = max(1.0 - report["waiting_frac"], 0.01)
                findings.append(Finding(node_id, name, "producer-bound", (
                    f"starvation: {where}: '{node_id}' waits {report['waiting_frac']:.0%} of "
                    f"the time; '{source}' produces {produced:.1f} msg/s while '{node_id}' "
                    f"could handle about {handled / busy:.1f} msg/s; the producer "
                    f"'{producer_id}' is the bottleneck")))
    return findings


def _slots_held(producer: dict[str, Any] | None, output: str) -> dict[str, Any] | None:
    """If consumers hold every slot of ``output`` and the producer suffers for it (it
    waited for a slot or dropped messages): who holds them, and the consumers holding most
    (``worst``)."""
    out = (producer or {}).get("outputs", {}).get(output, {})
    pool = out.get("pool") or {}
    held_by = pool.get("held_by") or {}
    slots = pool.get("slots", 0)
    if not slots or pool.get("in_use", 0) < slots or not held_by:
        return None
    waits, drops = pool.get("exhausted_waits", 0), out.get("dropped_full", 0)
    if not (waits or drops):
        return None
    most = max(held_by.values())
    effect = (f"dropped {drops} message(s) for want of a free slot" if drops
              else f"waited for a free slot {waits} time(s)")
    holders = ", ".join(f"'{c}' holds {n}" for c, n in sorted(held_by.items()))
    return {"slots": slots, "holders": holders, "effect": effect,
            "worst": {c for c, n in held_by.items() if n == most}}


class Diagnoser:
    """Rate-limits findings: a line when an edge's diagnosis appears or changes, then at
    most once a minute while it persists."""

    def __init__(self, repeat_s: float = REPEAT_S) -> None:
        self.repeat_s = repeat_s
        self._last: dict[tuple[str, str], tuple[str, float]] = {}

    def lines(self, reports: dict[str, dict[str, Any]], now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        out = []
        for finding in diagnose(reports):
            key = (finding.node, finding.input)
            previous = self._last.get(key)
            if previous is None or previous[0] != finding.kind or now - previous[1] >= (
                    self.repeat_s):
                self._last[key] = (finding.kind, now)
                out.append(finding.message)
        return out
