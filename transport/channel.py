"""One output's sending side: inline for small payloads, slot pool for large ones.

A producer calls :meth:`OutputChannel.send` (one copy into a slot) or loans a slot and
fills it in place (:meth:`OutputChannel.loan` then :meth:`OutputChannel.publish`); a small
descriptor then goes to each consumer the slot is lent to. Consumers on this host get it on
their link (``transport/outbound.py``), and hand slots back on the same link; the producer
reads those releases when it needs a slot, or once a second for its statistics. The gateway
(``_wire``), the one consumer that reads over the zenoh mesh, gets descriptors as zenoh puts
and signs its releases with the key it shares with this producer (a forged or replayed
release frees nothing); its end of stream carries one MAC per consumer for the same reason.
A consumer that dies is dropped from every slot it held (:meth:`consumer_lost`).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import zenoh

from pinflow.errors import ClosedError, DescriptorError, PayloadError, PoolExhausted
from pinflow.protocol import frames, messages
from pinflow.protocol.keys import RunKeys, last_part
from pinflow.protocol.messages import Layout
from pinflow.protocol.stats import ChannelStats
from pinflow.spec import GATEWAY_ID, OutputSpec
from pinflow.spec.units import MAX_SLOTS, size_from_env
from pinflow.transport import budget
from pinflow.transport.auth import ProducerKeys
from pinflow.transport.codec import Encoded
from pinflow.transport.malformed import Malformed
from pinflow.transport.outbound import Outbound
from pinflow.transport.pool import Loan, SlotPool, pool_bytes
from pinflow.transport.segment import PAGE, new_incarnation, segment_name

log = logging.getLogger("pinflow.transport")

MAX_POOL_BYTES_ENV = "PINFLOW_MAX_POOL_BYTES"
DEFAULT_MAX_POOL_BYTES = 2 << 30
"""Hard cap on one output's pool (all slots) unless PINFLOW_MAX_POOL_BYTES says otherwise."""
DRAIN_TIMEOUT_S = 1.0
"""How long ``close`` waits for consumers to hand slots back: far above the milliseconds a
descriptor takes to arrive (consumers map on arrival), well under the launcher's 5 s stop
grace, so a consumer that never reads cannot get its producer killed."""
GROWTH = 1.25
"""A pool sized from traffic regrows to 1.25x the larger message, so a stream of slowly
growing payloads does not recreate the segment on every message."""


RESYNC_DELAY_S = 1.0
"""How long after a consumer is back the producer waits before asking it which slots it
holds: descriptors still buffered on the dead link reach it within milliseconds of it
resuming, and must be counted as held, not as lost."""


def ask_held(session: zenoh.Session, keys: RunKeys, producer: str, consumer: str,
             auth: ProducerKeys, timeout: float = 2.0) -> set[tuple[str, int, int]] | None:
    """The ``(segment, index, generation)`` slots of ``producer`` that ``consumer`` holds,
    asked over zenoh; None if no genuine answer came (then nothing is taken back). The
    answer must carry the consumer's MAC over this query's nonce: a forged or replayed one
    could otherwise make us take back slots it still reads."""
    nonce = secrets.token_hex(messages.NONCE_BYTES)
    key = keys.held(consumer)
    try:
        replies = list(session.get(key, payload=messages.HeldQuery(producer, nonce).encode(),
                                   timeout=timeout))
    except Exception as exc:  # session closing
        log.debug("asking %s for its slots failed: %s", consumer, exc)
        return None
    for reply in replies:
        if reply.ok is None:
            continue
        body = reply.ok.payload.to_bytes()
        signature = reply.ok.attachment.to_bytes() if reply.ok.attachment else b""
        if not auth.held_is_genuine(consumer, key, nonce, body, signature):
            log.warning("ignored an answer about %s's slots that it did not sign", consumer)
            continue
        try:
            answer = messages.decode_held_reply(body)
        except DescriptorError as exc:
            log.warning("ignored a malformed answer from %s about its slots: %s", consumer, exc)
            continue
        if answer.consumer == consumer:
            return {(seg, index, gen) for seg, index, gen in answer.held}
    return None


def resync_consumer(session: zenoh.Session, keys: RunKeys, consumer: str,
                    channels: list[OutputChannel], lost_at: float) -> None:
    """After ``consumer``'s zenoh link was lost at ``lost_at`` (monotonic) and came back:
    ask it which slots it holds and take back, in ``channels``, the others lent to it before
    the loss (see :meth:`OutputChannel.resync`). Only consumers on the mesh (the gateway) can
    lose a descriptor or a release that way: a same-host link loses nothing while both ends
    live. Runs on a thread of its own: it waits."""
    channels = [c for c in channels if consumer in c.mesh_consumers]
    if not channels:
        return
    time.sleep(RESYNC_DELAY_S)
    held = ask_held(session, keys, channels[0].node_id, consumer, channels[0].auth)
    if held is None:
        log.warning("%s did not say which slots it holds after its link came back; its "
                    "slots stay lent to it", consumer)
        return
    for channel in channels:
        channel.resync(consumer, held, lost_at)


def max_pool_bytes() -> int:
    from_env = size_from_env(MAX_POOL_BYTES_ENV)
    return DEFAULT_MAX_POOL_BYTES if from_env is None else from_env


def _round_up(nbytes: int) -> int:
    return max(PAGE, -(-nbytes // PAGE) * PAGE)


def default_slots(consumer_queue_sizes: tuple[int, ...] | list[int]) -> int:
    """Slots when the YAML gives none: a consumer may queue ``queue_size`` messages and
    work on one more, and one more slot lets the producer write the next meanwhile."""
    return min(MAX_SLOTS, max(consumer_queue_sizes, default=1) + 2)


@dataclass(frozen=True)
class PoolOptions:
    """How an output's pool is sized and what happens when it is full (from the YAML)."""

    slots: int | None
    slot_bytes: int | None
    shm_threshold: int
    on_full: str
    block_timeout: float
    pinned: bool
    consumer_queue_sizes: tuple[int, ...]
    pinned_budget: int | None = None

    @classmethod
    def for_output(cls, output: OutputSpec, *, consumer_queue_sizes: Iterable[int],
                   pinned_budget: int | None) -> PoolOptions:
        """The options of ``output`` as its YAML declares them, for consumers that queue
        ``consumer_queue_sizes`` messages each (the default slot count follows them)."""
        return cls(slots=output.slots, slot_bytes=output.slot_bytes,
                   shm_threshold=output.shm_threshold, on_full=output.on_full,
                   block_timeout=output.block_timeout, pinned=output.pinned,
                   consumer_queue_sizes=tuple(consumer_queue_sizes),
                   pinned_budget=pinned_budget)

    def default_slots(self) -> int:
        return default_slots(self.consumer_queue_sizes)


class OutputChannel:
    """Sending side of one output. Thread-safe for one sender and zenoh callback threads.

    ``mesh_consumers``: the consumers that read over the zenoh mesh instead of a link (by
    default the gateway, ``_wire``, if it is one of ``consumers``).
    """

    def __init__(self, session: zenoh.Session, keys: RunKeys, node_id: str, output_id: str,
                 options: PoolOptions, *, consumers: list[str],
                 alive: Callable[[], set[str] | frozenset[str]], auth: ProducerKeys,
                 malformed: Malformed | None = None,
                 mesh_consumers: Iterable[str] | None = None) -> None:
        self.node_id, self.output_id, self.options = node_id, output_id, options
        self._keys = keys
        self._consumers = frozenset(consumers)
        self._mesh = self._consumers & frozenset(
            {GATEWAY_ID} if mesh_consumers is None else mesh_consumers)
        self._linked = self._consumers - self._mesh
        self._auth = auth
        self._malformed = malformed or Malformed(f"{node_id}/{output_id}", log)
        self._alive = alive
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._pool: SlotPool | None = None
        self._pools: dict[str, SlotPool] = {}
        self._closed = False
        self._warned_drop = 0.0
        self._stats = ChannelStats()
        self._links = Outbound(keys, node_id, output_id, auth, malformed=self._malformed,
                               on_release=self._released, on_undelivered=self._undelivered,
                               backlog=max(64, *options.consumer_queue_sizes, 0))
        self._publisher: zenoh.Publisher | None = None
        if self._mesh:
            self._publisher = session.declare_publisher(
                keys.data(node_id, output_id),
                congestion_control=zenoh.CongestionControl.BLOCK,
                reliability=zenoh.Reliability.RELIABLE,
            )
        self._releases = session.declare_subscriber(keys.release_all(node_id, output_id),
                                                    self._on_release)
        if options.slot_bytes is not None:
            # Sized by the YAML: create (and prefault) the pool now, at node start-up,
            # not on the first message, where it would delay the first frames.
            self._pool_for(options.slot_bytes, options.pinned)

    @property
    def consumers(self) -> frozenset[str]:
        """Nodes this output is addressed to (as the launcher wired it)."""
        return self._consumers

    @property
    def stats(self) -> ChannelStats:
        """What this output sent and dropped so far."""
        self._stats.dropped_link = self._links.undelivered
        return self._stats

    @property
    def mesh_consumers(self) -> frozenset[str]:
        """The consumers that read over the zenoh mesh (the gateway), not over a link."""
        return self._mesh

    @property
    def auth(self) -> ProducerKeys:
        """The keys that prove which consumer a release or held-slots answer comes from."""
        return self._auth

    @property
    def pool(self) -> SlotPool | None:
        """The pool new messages go to (``None`` until the first large message)."""
        return self._pool

    def pools(self) -> list[SlotPool]:
        with self._lock:
            return list(self._pools.values())

    def reach(self, consumer: str) -> None:
        """``consumer``'s token appeared: open its link now (and have it map the pool), so
        the first message does not pay for it."""
        if consumer in self._linked and not self._closed:
            self._links.reach(consumer)

    def flush_backlog(self) -> None:
        """Push on frames waiting in link backlogs: a consumer that stopped reading for a
        while may read again while this producer sends nothing (the statistics thread calls
        this once a second; cheap when nothing waits)."""
        if not self._closed and self._links.queued():
            self._links.flush()

    def settle(self) -> None:
        """Take in the releases consumers sent and push on what waits in link backlogs
        (the producer does it whenever it needs a slot; the statistics report too)."""
        if not self._closed:
            self._links.collect()
            self.flush_backlog()

    # -- sending --------------------------------------------------------------------------
    def send(self, encoded: Encoded, metadata: dict[str, Any] | None, *,
             pinned: bool = False, origin: tuple[int, int] | None = None,
             meta_json: bytes | None = None) -> bool:
        """Publish one message; ``False`` if it was dropped because the pool was full.

        ``origin`` = (seq, sent_ns) of a message forwarded from another host, so consumers
        see the producer's sequence numbers and end-to-end latency. ``meta_json``: the
        metadata's JSON (``messages.metadata_json(metadata)``) when the caller made it
        already, so it is not made twice.
        """
        self._check_open()
        if self.inline(encoded.nbytes, pinned=pinned):
            meta = messages.metadata_json(metadata) if meta_json is None else meta_json
            seq, sent_ns = origin or self._stamp()
            readers = self._reachable()
            linked = readers - self._mesh
            if linked:
                header = frames.encode(frames.Data(seq, sent_ns, encoded.layout, meta))
                self._links.send(linked, header, encoded.data)
            if self._publisher is not None:
                zenoh_header = messages.Header.new("inline", seq, sent_ns,
                                                   layout=encoded.layout, metadata=metadata)
                self._publisher.put(encoded.data.tobytes(), attachment=zenoh_header.encode())
            self._stats.sent_inline += 1
            return True
        loan = self.loan(encoded.nbytes, pinned=pinned)
        if loan is None:
            return False
        memoryview(loan.array)[:] = encoded.data  # a memcpy, without numpy's cold dispatch
        self.publish(loan, encoded.layout, metadata, origin=origin, meta_json=meta_json)
        return True

    def inline(self, nbytes: int, *, pinned: bool = False) -> bool:
        """A message of ``nbytes`` travels in its frame, not in a slot (below the output's
        ``shm_threshold``, and not asked to be pinned)."""
        return nbytes < self.options.shm_threshold and not pinned

    def _stamp(self) -> tuple[int, int]:
        return next(self._seq), time.time_ns()

    def _reachable(self) -> frozenset[str]:
        """The consumers to address now (count the others): those whose token we see, and
        those whose link still stands. A link is hung up only when its consumer's process is
        gone, so a consumer whose token vanished because one side was paused past the zenoh
        lease still reads what its link carries."""
        readers = self._consumers & self._alive()
        if len(readers) != len(self._consumers):
            readers |= self._linked & self._links.linked()
            self._stats.unreachable += len(self._consumers) - len(readers)
        return readers

    def loan(self, nbytes: int, *, pinned: bool = False) -> Loan | None:
        """A free slot of ``nbytes`` to fill in place; ``None`` if full under ``on_full: drop``.

        Raises ``PoolExhausted`` under ``on_full: block`` when no slot frees up in time.
        """
        if self._closed:
            raise ClosedError(f"output {self.node_id}/{self.output_id} is closed")
        pool = self._pool
        if pool is None or nbytes > pool.slot_bytes or (pinned and not pool.pinned):
            pool = self._pool_for(nbytes, pinned)
        loan = pool.try_acquire(nbytes)
        if loan is not None:
            return loan
        # Releases are read when they are needed, not one syscall per message.
        self._links.collect()
        loan = pool.try_acquire(nbytes)
        if loan is not None:
            return loan
        drop = self.options.on_full == "drop"
        if not drop:
            loan = self._wait_for_slot(pool, nbytes, self.options.block_timeout)
            if loan is not None:
                pool.note_exhausted(timed_out=False)
                return loan
        pool.note_exhausted(timed_out=True)
        if drop:
            self._stats.dropped_full += 1
            now = time.monotonic()
            if now - self._warned_drop > 5.0:
                self._warned_drop = now
                log.warning("%s/%s: pool full, dropped a message (%d so far); consumers hold "
                            "all %d slots", self.node_id, self.output_id,
                            self._stats.dropped_full, pool.slots)
            return None
        raise PoolExhausted(
            f"output {self.node_id}/{self.output_id}: all {pool.slots} slots of "
            f"{pool.slot_bytes} bytes are still held by consumers after waiting "
            f"{self.options.block_timeout:g}s. Consumers keep a slot while any view of a "
            "received value lives: release events sooner (event.release()), or raise `slots` "
            "/ `block_timeout` on the output, or set `on_full: drop`."
        )

    def _wait_for_slot(self, pool: SlotPool, nbytes: int, timeout: float) -> Loan | None:
        """Wait for a release (on a link, over zenoh, or a consumer gone) up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._links.flush()
            self._links.wait(min(left, 0.1))
            self._check_open()
            self._links.collect()
            loan = pool.try_acquire(nbytes)
            if loan is not None:
                return loan

    def publish(self, loan: Loan, layout: Layout, metadata: dict[str, Any] | None,
                *, origin: tuple[int, int] | None = None,
                meta_json: bytes | None = None) -> None:
        """Hand a filled loan to every live consumer of this output (``origin`` and
        ``meta_json`` as for :meth:`send`)."""
        pool = loan._pool
        meta = meta_json
        if meta is None:
            try:
                meta = messages.metadata_json(metadata)
            except PayloadError:
                pool.cancel(loan)
                raise
        readers = self._reachable()
        generation = pool.stamp(loan, readers)
        seq, sent_ns = origin or (next(self._seq), time.time_ns())
        linked = readers - self._mesh if self._mesh else readers
        index, nbytes = loan.index, loan.nbytes
        if linked:
            slot = frames.Slot(pool.name, index, pool.offset(index), nbytes, generation)
            header = frames.encode(frames.Data(seq, sent_ns, layout, meta, slot))
            self._links.send(linked, header, slot=slot)
        if self._publisher is not None:
            ref = messages.SlotRef(pool.name, index, pool.offset(index), nbytes, generation,
                                   readers)
            zenoh_header = messages.Header.new("shm", seq, sent_ns, layout=layout,
                                               metadata=metadata, slot=ref)
            self._publisher.put(b"", attachment=zenoh_header.encode())
        self._stats.sent_shm += 1

    def cancel(self, loan: Loan) -> None:
        loan.pool.cancel(loan)

    def _pool_for(self, nbytes: int, pinned: bool) -> SlotPool:
        """The current pool if the message fits, else a new one (see ``GROWTH``)."""
        with self._lock:
            pool = self._pool
            if pool is not None and nbytes <= pool.slot_bytes and (pool.pinned or not pinned):
                return pool
            new = self._new_pool(nbytes, pinned)
        self._links.announce(new.name)
        return new

    def _new_pool(self, nbytes: int, pinned: bool) -> SlotPool:
        """Make the pool that replaces the current one (caller holds the lock)."""
        pool = self._pool
        opts = self.options
        if opts.slot_bytes is not None and nbytes > opts.slot_bytes:
            raise PayloadError(
                f"output {self.node_id}/{self.output_id}: message of {nbytes} bytes does "
                f"not fit a slot of {opts.slot_bytes} bytes; raise `slot_bytes` on the "
                "output in the YAML"
            )
        slot_bytes = opts.slot_bytes or _round_up(
            nbytes if pool is None else max(int(nbytes * GROWTH), pool.slot_bytes))
        slots = opts.slots or opts.default_slots()
        cap = max_pool_bytes()
        if opts.slots is None:
            slots = max(2, min(slots, cap // slot_bytes))
        if slots * slot_bytes > cap:
            raise PayloadError(
                f"output {self.node_id}/{self.output_id}: a pool of {slots} slots x "
                f"{slot_bytes} bytes exceeds the {cap}-byte cap; lower `slots` or set "
                f"{MAX_POOL_BYTES_ENV}"
            )
        pinned = pinned or opts.pinned
        name = segment_name(self._keys.run_id, self.node_id, self.output_id,
                            new_incarnation(), pinned=pinned)
        if pinned:
            budget.check({f"{self.node_id}/{self.output_id}": pool_bytes(slots, slot_bytes)},
                         self.options.pinned_budget)
        new = SlotPool(name, slots, slot_bytes, pinned=pinned)
        self._pools[name] = new
        self._pool = new
        self._stats.pools_created += 1
        if pool is not None:
            self._retire_if_idle(pool)
        return new

    def _retire_if_idle(self, pool: SlotPool) -> None:
        """Close a replaced pool once none of its slots is held (caller holds the lock)."""
        if pool is not self._pool and pool.idle():
            self._pools.pop(pool.name, None)
            pool.close()

    # -- slots coming back -----------------------------------------------------------------
    def _released(self, consumer: str, segment: str, slots: list[tuple[int, int]]) -> None:
        """``consumer`` (proven by its link) is done with ``slots`` of ``segment``; it drops
        only itself from each, and only at the generation it read."""
        with self._lock:
            pool = self._pools.get(segment)
            if pool is None:
                return
            for index, generation in slots:
                pool.release(index, generation, consumer)
            self._retire_if_idle(pool)

    def _undelivered(self, consumer: str, segment: str, index: int, generation: int) -> None:
        """``consumer`` never got the frame that lent it this slot: it will not release it."""
        self._released(consumer, segment, [(index, generation)])

    def _on_release(self, sample: zenoh.Sample) -> None:
        """A consumer on the mesh is done with slots. Counts only if signed with that
        consumer's key; then it drops only that consumer from slots it holds at that
        generation."""
        consumer = last_part(sample.key_expr)
        try:
            body = sample.payload.to_bytes()
            signature = b"" if sample.attachment is None else sample.attachment.to_bytes()
            if not self._auth.release_is_genuine(consumer, str(sample.key_expr), body,
                                                 signature):
                why = ("is not signed with its key" if self._auth.knows(consumer)
                       else "names no consumer of this output")
                raise DescriptorError(f"release for consumer {consumer!r} {why}; ignored")
            release = messages.decode_release(body)
            self._released(consumer, release.segment, release.slots)
            self._links.wake()
        except Exception as exc:  # whatever a peer sent, this callback must not raise
            self._malformed.refuse(sample.key_expr, exc)

    def consumer_lost(self, node_id: str) -> int:
        """A consumer's process is gone: take back every slot it held and hang up its link.
        Returns how many came free. Call it only once the process is really gone (its
        liveness lock is free, see ``pinflow.transport.liveness``): a consumer that is only
        unreachable, say paused past the zenoh lease, still reads the slots it holds."""
        self._links.drop(node_id)
        freed = 0
        with self._lock:
            for pool in list(self._pools.values()):
                freed += pool.drop_holder(node_id)
                self._retire_if_idle(pool)
        if freed:
            self._links.wake()
            log.info("%s/%s: took back %d slot(s) from %s, whose process is gone",
                     self.node_id, self.output_id, freed, node_id)
        return freed

    def resync(self, consumer: str, held: set[tuple[str, int, int]],
               published_before: float) -> int:
        """After a lost zenoh link: ``consumer`` (on the mesh) holds exactly the ``(segment,
        index, generation)`` slots in ``held``; take back the others it was lent before
        ``published_before``. Consumers on links lose nothing that way: left alone."""
        if consumer not in self._mesh:
            return 0
        freed = 0
        with self._lock:
            for pool in list(self._pools.values()):
                mine = {(index, gen) for seg, index, gen in held if seg == pool.name}
                freed += pool.resync(consumer, mine, published_before)
                self._retire_if_idle(pool)
        if freed:
            self._links.wake()
            log.warning("%s/%s: %d slot(s) lent to %s were lost with a broken link (their "
                        "descriptor or release never arrived); taken back", self.node_id,
                        self.output_id, freed, consumer)
        return freed

    def held_by(self) -> dict[str, int]:
        """Slots each consumer holds, over every pool of this output (releases sent so far
        taken in)."""
        self.settle()
        counts: dict[str, int] = {}
        for pool in self.pools():
            for holder, n in pool.held_by().items():
                counts[holder] = counts.get(holder, 0) + n
        return counts

    # -- shutdown ---------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"output {self.node_id}/{self.output_id} is closed")

    def close(self, drain_timeout: float = DRAIN_TIMEOUT_S, *, send_eos: bool = True,
              run_stopping: bool = False) -> None:
        """Send end-of-stream, wait briefly for in-flight slots, then unlink the segments.

        A consumer may not have mapped a segment yet when the producer finishes; unlinking
        then would lose the messages it still has to read. So close waits until every slot
        is released or its consumer is gone, but only ``drain_timeout``: consumers map a
        segment as soon as a descriptor arrives, which takes milliseconds, whereas a
        consumer that never reads would hold its slots until the launcher's stop grace ran
        out, and the producer, not the consumer, would be killed and blamed. Slots still
        held after that are named in one log line. Mapped slots stay valid for consumers
        after the unlink.
        """
        if self._closed:
            return
        self._closed = True
        if send_eos:
            seq = next(self._seq)
            self._links.end(seq, run_stopping=run_stopping)
            if self._publisher is not None:
                auth = self._auth.sign_eos(self._keys.data(self.node_id, self.output_id), seq)
                eos = messages.Header.new("eos", seq, time.time_ns(), auth=auth)
                self._publisher.put(b"", attachment=eos.encode())
        deadline = time.monotonic() + drain_timeout
        while True:
            self._links.collect()
            self._links.flush()
            if all(p.idle() for p in self.pools()) and not self._links.queued():
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._links.wait(min(left, 0.05))
        held = self.held_by()
        if held:
            log.warning(
                "%s/%s: closing while consumers still hold slots after %.1fs: %s; they keep "
                "their mapped slots, the producer exits", self.node_id, self.output_id,
                drain_timeout, ", ".join(f"{c!r} holds {n}" for c, n in held.items()))
        self._releases.undeclare()
        if self._publisher is not None:
            self._publisher.undeclare()
        self._links.close()
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()
            self._pool = None
