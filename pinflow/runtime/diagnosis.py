"""Which side of an edge is the bottleneck, from the nodes' live statistics.

Finding the starved stage of a GPU pipeline otherwise means plotting queue occupancy and
both rates by hand. The launcher does it continuously: an input whose queue is near full
and dropping is consumer-bound (backlog); an input that sits near empty while its node
waits, fed by a producer that is busy all the time, is producer-bound (starvation). Busy
means working: neither waiting in ``next()`` nor idle otherwise, so it also takes half a
core or more of CPU. A producer that mostly waits (a camera on a 30 Hz timer) or paces
itself with ``time.sleep`` is rate-limited by design, not a bottleneck; one that blocks on
I/O outside pinflow (a slow network read) looks the same and is not named either. A
producer whose every slot is held by consumers looks busy and its consumers idle, but the
consumer that keeps the slots is the bottleneck (slots held), and is named as such.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pinflow.protocol.stats import OutputReport, StatsReport
from pinflow.spec.model import BUILTIN_SOURCES

FULL = 0.8
EMPTY = 0.1
CONSUMER_WAITING = 0.5
PRODUCER_BUSY = 0.2  # producer waiting fraction below which it may work flat out
PRODUCER_CPU_BUSY = 50.0
"""CPU (% of one core) a producer must use to count as working flat out: one that sleeps
between sends waits nowhere pinflow sees, but uses next to none."""
REPEAT_S = 60.0


@dataclass(frozen=True)
class Finding:
    node: str
    input: str
    kind: str  # "consumer-bound" or "producer-bound"
    message: str


@dataclass(frozen=True)
class _SlotsHeld:
    slots: int
    holders: str
    effect: str
    worst: set[str]


def diagnose(reports: dict[str, StatsReport]) -> list[Finding]:
    """Findings for every input of every node, given each node's latest stats report."""
    findings = []
    for node_id, report in reports.items():
        for name, inp in report.inputs.items():
            source = inp.source
            if source.startswith(BUILTIN_SOURCES) or inp.closed:
                continue
            producer_id, _, output = source.partition("/")
            producer = reports.get(producer_id)
            out = None if producer is None else producer.outputs.get(output)
            produced = out.out_rate if out is not None else inp.in_rate
            handled = inp.handled_rate
            where = f"node '{node_id}' input '{name}' (from '{source}')"
            held = _slots_held(out)
            if held is not None:
                if node_id not in held.worst:
                    continue  # another consumer holds the slots: neither side is to blame
                findings.append(Finding(node_id, name, "consumer-bound", (
                    f"slots held: {where}: consumers hold all {held.slots} slots of "
                    f"'{source}' ({held.holders}); '{producer_id}' {held.effect}; the "
                    f"consumer '{node_id}' is the bottleneck: it keeps received values (drop "
                    "them or call event.release() sooner, or raise `slots` on the output)")))
            elif inp.occupancy >= FULL and inp.drop_rate > 0:
                findings.append(Finding(node_id, name, "consumer-bound", (
                    f"backlog: {where}: '{source}' produces {produced:.1f} msg/s, "
                    f"'{node_id}' handles {handled:.1f} msg/s and drops "
                    f"{inp.drop_rate:.1f} msg/s (queue {inp.queued}/{inp.size}"
                    f" full); the consumer '{node_id}' is the bottleneck")))
            elif (producer is not None and inp.occupancy <= EMPTY
                  and report.waiting_frac >= CONSUMER_WAITING
                  and producer.waiting_frac <= PRODUCER_BUSY
                  and producer.cpu_pct >= PRODUCER_CPU_BUSY):
                busy = max(1.0 - report.waiting_frac, 0.01)
                findings.append(Finding(node_id, name, "producer-bound", (
                    f"starvation: {where}: '{node_id}' waits {report.waiting_frac:.0%} of "
                    f"the time; '{source}' produces {produced:.1f} msg/s while '{node_id}' "
                    f"could handle about {handled / busy:.1f} msg/s; the producer "
                    f"'{producer_id}' is the bottleneck")))
    return findings


def _slots_held(out: OutputReport | None) -> _SlotsHeld | None:
    """If consumers hold every slot of the output and the producer suffers for it (it
    waited for a slot or dropped messages): who holds them, and the consumers holding most
    (``worst``)."""
    pool = None if out is None else out.pool
    if out is None or pool is None:
        return None
    if not pool.slots or pool.in_use < pool.slots or not pool.held_by:
        return None
    waits, drops = pool.exhausted_waits, out.dropped_full
    if not (waits or drops):
        return None
    most = max(pool.held_by.values())
    effect = (f"dropped {drops} message(s) for want of a free slot" if drops
              else f"waited for a free slot {waits} time(s)")
    holders = ", ".join(f"'{c}' holds {n}" for c, n in sorted(pool.held_by.items()))
    return _SlotsHeld(pool.slots, holders, effect,
                      {c for c, n in pool.held_by.items() if n == most})


class Diagnoser:
    """Rate-limits findings: a line when an edge's diagnosis appears or changes, then at
    most once a minute while it persists."""

    def __init__(self, repeat_s: float = REPEAT_S) -> None:
        self.repeat_s = repeat_s
        self._last: dict[tuple[str, str], tuple[str, float]] = {}

    def lines(self, reports: dict[str, StatsReport], now: float | None = None) -> list[str]:
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
