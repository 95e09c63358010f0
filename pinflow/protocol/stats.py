"""The statistics a node keeps and the report it publishes once a second on
``pinflow/<run>/stats/<node>``, each defined once.

The counters are what the transport and the inbox count as they go (``CopyStats`` in the
device copier, ``PoolStats`` of a slot pool, ``ChannelStats`` of an output, ``QueueStats``
of an input); ``Node.stats()`` returns :class:`NodeStats` as plain dicts. The report
(:class:`StatsReport`) extends them with rates, latency, memory and CPU; ``pinflow top``,
``pinflow stats --json`` and the launcher's diagnosis read it by attribute, after
:data:`STATS_REPORT` decoded it strictly. Each report struct lists its fields in the order of
the JSON that ``pinflow stats --json`` prints.
"""

from __future__ import annotations

import msgspec

from pinflow.protocol.strict import StrictCodec

VERSION = 1


class _Counters(msgspec.Struct, forbid_unknown_fields=True):
    """Base of every struct here: a report from a peer names no field we do not know."""


class CopyStats(_Counters):
    """What one device copier did (per CUDA device a node receives on)."""

    registrations: int = 0
    """cudaHostRegister calls that succeeded (one per pinned segment, never per message)."""
    unregistrations: int = 0
    """cudaHostUnregister calls (each after the segment's last copy completed)."""
    registration_failures: int = 0
    """Segments whose registration failed; their copies are pageable."""
    unregistration_failures: int = 0
    """cudaHostUnregister calls that failed (logged; the node keeps running)."""
    copies: int = 0
    """Host-to-device copies issued from a registered (pinned) slot."""
    pageable_copies: int = 0
    """Copies from memory CUDA does not know as pinned (unpinned pools, inline payloads,
    failed registrations, forgotten segments): correct, but staged by the driver."""
    forgotten_copies: int = 0
    """Of the pageable copies: frames whose segment had been replaced or closed meanwhile."""
    registration_waits: int = 0
    """Copies that waited for their segment's registration to finish."""
    bytes_copied: int = 0
    in_flight: int = 0
    """Copies issued whose completion event has not been seen yet."""


class PoolStats(_Counters):
    """A snapshot of one slot pool's counters."""

    slots: int
    """Number of slots in the pool."""
    slot_bytes: int
    """Capacity of each slot in bytes."""
    free: int
    """Slots that acquire() can hand out right now."""
    in_use: int
    """Published slots that consumers have not all released yet."""
    loaned: int
    """Slots acquired and being written, not yet published or cancelled."""
    acquired_total: int
    """Successful acquire() calls since creation."""
    exhausted_waits: int
    """acquire() calls that found no free slot and had to wait (or give up, with timeout=0)."""
    timeouts: int
    """acquire() calls that returned None because no slot freed up in time."""
    held_by: dict[str, int]
    """Slots each consumer holds right now (consumer node id -> slots)."""


class PoolReport(PoolStats, kw_only=True):
    """An output's current pool, as ``Node.stats()`` and the report show it."""

    pinned: bool
    segment: str


class ChannelStats(_Counters):
    """What one output sent, counted by its channel."""

    sent_inline: int = 0
    """Messages sent with their payload inside (below the threshold)."""
    sent_shm: int = 0
    """Messages sent as slot descriptors."""
    dropped_full: int = 0
    """Messages dropped because no slot was free (``on_full: drop``)."""
    dropped_link: int = 0
    """Messages one consumer did not get: its link's backlog was full (it read nothing for
    that long; it counts them as dropped too), or its link was gone."""
    unreachable: int = 0
    """Messages not addressed to a consumer the producer could not reach (its token was
    gone: a pause past the zenoh lease, or not started yet), one per message and consumer."""
    pools_created: int = 0
    """Segments created for this output (more than one means the pool grew or changed)."""


class OutputStats(ChannelStats, kw_only=True):
    """An output's counters and its current pool (``None`` while it has none)."""

    pool: PoolReport | None


class QueueStats(_Counters, kw_only=True):
    """An input's queue: where it reads from, how full it is, what it counted."""

    source: str
    queued: int
    size: int
    received: int
    dropped: int
    delivered: int
    closed: bool


class NodeStats(_Counters, kw_only=True):
    """A node's counters (``Node.stats()``); the report is built from two of them."""

    inputs: dict[str, QueueStats]
    outputs: dict[str, OutputStats]
    malformed: int
    segments_mapped: int
    devices: dict[str, CopyStats]
    not_lent: int = 0
    """Descriptors skipped because their slot was lent to other consumers only (sent while
    the producer could not reach this node: lost like messages on a dead link)."""


class InputReport(QueueStats, kw_only=True):
    """An input over the report's interval."""

    occupancy: float
    """Mean queue fill 0..1, sampled at 10 Hz."""
    in_rate: float
    handled_rate: float
    drop_rate: float
    latency_p50_ms: float | None
    """``None`` when nothing was delivered in the interval."""
    latency_p99_ms: float | None


class OutputReport(OutputStats, kw_only=True):
    """An output over the report's interval."""

    sent: int
    out_rate: float


class Reporter(_Counters, kw_only=True):
    """Who reports: the fields of every report of one node process that never change."""

    v: int = VERSION
    node: str
    run: str
    """The run id of the node's host share (``<run>-<machine>`` on a daemon's host)."""
    pid: int
    restarts: int
    machine: str | None


class StatsReport(Reporter, kw_only=True):
    """One node's once-a-second report."""

    t: int
    """When the report was made (ns since the epoch)."""
    interval_s: float
    inputs: dict[str, InputReport]
    outputs: dict[str, OutputReport]
    waiting_frac: float
    """Share of the interval the node spent blocked in ``next()`` (0..1)."""
    pinned_bytes: int
    devices: dict[str, CopyStats]
    malformed: int
    rss_bytes: int
    private_bytes: int
    cpu_pct: float


STATS_REPORT: StrictCodec[StatsReport] = StrictCodec(StatsReport, "stats report",
                                                     max_bytes=4 << 20)
