"""Consumer side of shared memory: map each producer segment once, verify every descriptor,
and send slots back when the last view of a received value is gone.

A received payload is a read-only numpy array directly over the slot; everything built on
it (the pyarrow value, ``to_numpy()`` views, torch tensors) keeps that array alive. A
finalizer on it gives the slot back the way the descriptor came: on its same-host link
(``transport/inbound.py``: written at once, never waiting for a lock, as finalizers may run
on any thread at any time), or, for a descriptor that came over the zenoh mesh (the
gateway's), through a small thread that sends signed releases in batches, so finalizers
never touch zenoh.

The producer counts one release per consumer per published slot, so a consumer reads each
``(segment, slot, generation)`` at most once: a repeated or replayed descriptor is refused,
never a second view the producer does not know about. Nor does it read a slot the producer
did not lend it (the descriptor names whom it lent the slot to): a producer that takes this
node for unreachable lends the slot to the others only, and writes it again once they are
done, while zenoh may already deliver the descriptor here again. Releases go out on this
consumer's own key, signed with the key it shares with the producer (``transport/auth.py``).

On the mesh, a descriptor or a release can die with a zenoh link (a pause on either side
outlasted the zenoh lease), and the producer keeps our slots until our process is really
gone. So the receiver answers, on ``held/<node>``, which slots it still holds (signed like a
release, over the asker's nonce): a producer that got us back after a lost link takes back
the others it lent us before the loss. (A same-host link loses nothing while both ends live.)
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import zenoh

from pinflow.errors import ClosedError, DescriptorError, SlotNotLent
from pinflow.protocol import frames, messages
from pinflow.protocol.keys import RunKeys
from pinflow.protocol.messages import SlotRef
from pinflow.transport.auth import ConsumerKeys
from pinflow.transport.pool import SlotReader
from pinflow.transport.segment import PINNED_SUFFIX, Segment, parse_segment_name

_Release = tuple[str, str, str, int, int]
"""(producer node, output, segment, slot index, generation)"""
GiveBack = Callable[[str, int, int], None]
"""``(segment, slot index, generation)``: hand one slot back to its producer. Called from
finalizers: it must not block."""

log = logging.getLogger("pinflow.transport")

NOT_LENT_LOG_INTERVAL_S = 5.0
"""Skipped descriptors come in bursts (every message of a lost link's last moments): one
line for the first, then at most one line per interval."""


@dataclass
class Mapping:
    """One producer segment mapped in this process."""

    segment: Segment
    reader: SlotReader
    producer: tuple[str, str]
    pinned: bool = False
    """The producer made this pool for DMA (``pinned=True``): its name says so."""

    def __post_init__(self) -> None:
        self.pinned = self.segment.name.endswith(PINNED_SUFFIX)


class SlotReceiver:
    """Turns slot descriptors from this run's producers into zero-copy, verified views."""

    _REMEMBERED_SEGMENTS = 256
    _REMEMBERED_REFUSALS = 1024

    def __init__(self, session: zenoh.Session, keys: RunKeys, node_id: str,
                 signer: ConsumerKeys, *, writable_mappings: bool = False) -> None:
        self._session, self._keys, self.node_id = session, keys, node_id
        self._signer = signer
        self.writable_mappings = writable_mappings
        """Map segments read-write (only for a GPU that cannot register read-only memory);
        otherwise ``PROT_READ``: this process cannot write a producer's slots."""
        self._lock = threading.Lock()
        self._claims = threading.Lock()
        self._newest: collections.OrderedDict[str, dict[int, int]] = collections.OrderedDict()
        """Per segment (mapped or not any more), per slot: the newest generation read."""
        self._given_back: collections.OrderedDict[tuple[str, int, int], None] = (
            collections.OrderedDict())
        """Slots released without being read (refused descriptors): never read them later."""
        self._mappings: dict[str, Mapping] = {}
        self._watched: dict[int, tuple[Any, tuple[str, int, int], GiveBack, bool]] = {}
        """Received views being watched: weak reference -> what to give back when it dies."""
        self._owners: dict[str, tuple[str, str, str, str]] = {}
        """Segment name -> its parsed parts (names repeat in every descriptor)."""
        self._publishers: dict[tuple[str, str], zenoh.Publisher] = {}
        self._pending: queue.SimpleQueue[_Release | None] = queue.SimpleQueue()
        # Views alive per (segment, index, generation): +1 when read, -1 when the finalizer
        # ran. Finalizers may run at any time on any thread, so both ends only queue here;
        # the count is settled under a lock by whoever needs it.
        self._ledger: queue.SimpleQueue[tuple[int, tuple[str, int, int]]] = queue.SimpleQueue()
        self._held: collections.Counter[tuple[str, int, int]] = collections.Counter()
        self._held_lock = threading.Lock()
        self._queryable: zenoh.Queryable | None = session.declare_queryable(
            keys.held(node_id), self._on_held_query)
        self.segments_mapped = 0
        """Segments this node has mapped so far (one per producer pool, never per message)."""
        self.not_lent = 0
        """Descriptors skipped because their slot was not lent to this node (see
        ``SlotNotLent``): messages lost with a broken link."""
        self._not_lent_logged = -NOT_LENT_LOG_INTERVAL_S
        self.on_map: list[Callable[[Segment, bool], None]] = []
        """Callbacks ``f(segment, pinned)`` run once a segment is mapped (CUDA starts
        registering it here, on its own thread); they must not block."""
        self.on_unmap: list[Callable[[Segment], None]] = []
        """Callbacks ``f(segment)`` run before a mapping is dropped (CUDA unregisters here)."""
        self._thread: threading.Thread | None = None
        """Sends releases over the mesh; started by the first descriptor that came that way."""

    def mappings(self) -> list[Mapping]:
        with self._lock:
            return list(self._mappings.values())

    def prepare_views(self) -> None:
        """Make the views the next reads take (the node's thread, before it waits: see
        ``SlotReader.prepare_views``)."""
        for mapping in list(self._mappings.values()):
            mapping.reader.prepare_views()

    def read(self, producer: tuple[str, str], ref: SlotRef | None) -> tuple[np.ndarray, Mapping]:
        """Verify ``ref`` (a decoded descriptor that came over the mesh from ``producer`` =
        (node, output)) and return a read-only view of its bytes whose collection releases
        the slot, signed, over the mesh."""
        if ref is None:
            raise DescriptorError("shared-memory message without a slot descriptor")
        if self.node_id not in ref.lent_to:
            self._check_owner(producer, ref.segment)
            raise self._not_lent(producer, ref)
        self._start_release_thread()
        node, output = producer
        return self.read_slot(producer, ref, lambda seg, index, gen: self._pending.put(
            (node, output, seg, index, gen)), held=True)

    def read_slot(self, producer: tuple[str, str], ref: SlotRef | frames.Slot,
                  give_back: GiveBack, *, held: bool = False) -> tuple[np.ndarray, Mapping]:
        """Verify a slot lent to this node by ``producer`` and return a read-only view of its
        bytes; once the last view derived from it is gone, ``give_back`` returns the slot.
        A slot refused for a reason of ours (its segment cannot be mapped) is given back at
        once. ``held``: count the view in :meth:`held` (asked by mesh producers only)."""
        segment, index, generation = ref.segment, ref.index, ref.generation
        owner = self._owners.get(segment)
        if (owner is None or owner[1] != producer[0] or owner[2] != producer[1]
                or owner[0] != self._keys.run_id):
            self._check_owner(producer, segment)
        key = (segment, index, generation)
        mapping = self._mappings.get(segment)
        try:
            if mapping is None:
                mapping = self._map(segment, producer)
            view = mapping.reader.read(ref)  # checks index, offset, length and generation
        except (OSError, ClosedError) as exc:
            # Refused for a reason of ours (the segment is gone, cannot be mapped, was just
            # forgotten), not of the descriptor: give the slot back, or the producer would
            # lose it for good. A release drops only this consumer from the slot, so a
            # forged descriptor can make it free nothing that another consumer holds.
            self._give_back_unread(ref, give_back)
            raise DescriptorError(f"{exc}; slot {index} handed back") from None
        except DescriptorError as exc:
            if mapping is not None:
                raise  # the descriptor does not match the segment: nothing was lent here
            self._give_back_unread(ref, give_back)
            raise DescriptorError(f"{exc}; slot {index} handed back") from None
        with self._claims:
            # Only now, with the generation checked against the segment: a forged one must
            # not make us refuse the genuine descriptors that follow.
            newest = self._newest.get(segment)
            if newest is None:
                newest = self._newest[segment] = {}
                while len(self._newest) > self._REMEMBERED_SEGMENTS:
                    self._newest.popitem(last=False)
            else:
                self._newest.move_to_end(segment)  # O(1): the most recent stays remembered
            seen = newest.get(index, 0)
            if generation <= seen or (self._given_back and key in self._given_back):
                raise DescriptorError(
                    f"repeated descriptor for {segment}[{index}] generation {generation} "
                    f"(already read: generation {seen}); dropped")
            newest[index] = generation
        if held:
            self._ledger.put((1, key))
        watch = weakref.ref(view, self._view_gone)
        self._watched[id(watch)] = (watch, key, give_back, held)
        return view, mapping

    def _give_back_unread(self, ref: SlotRef | frames.Slot, give_back: GiveBack) -> None:
        """Hand back a slot we could not read, once per generation."""
        key = (ref.segment, ref.index, ref.generation)
        with self._claims:
            self._check_first_delivery(ref)
            self._given_back[key] = None
            while len(self._given_back) > self._REMEMBERED_REFUSALS:
                self._given_back.popitem(last=False)
        give_back(*key)

    def _check_owner(self, producer: tuple[str, str], segment: str) -> None:
        """``DescriptorError`` unless ``segment`` is one of ``producer``'s, in this run."""
        parsed = self._owners.get(segment)
        if parsed is None:
            parsed = parse_segment_name(segment)
            if parsed is not None and len(self._owners) < self._REMEMBERED_SEGMENTS:
                self._owners[segment] = parsed
        if parsed is None or parsed[:3] != (self._keys.run_id, *producer):
            raise DescriptorError(
                f"segment {segment!r} does not belong to {producer[0]}/{producer[1]} of "
                f"run {self._keys.run_id}; refused"
            )

    def prepare(self, producer: tuple[str, str], segment: str) -> None:
        """``producer`` announced its pool ``segment``: map it now (CUDA starts registering
        it), so its first frame does not pay for that. Only a hint: if it cannot be mapped,
        each descriptor naming it is refused (and given back) when it comes."""
        self._check_owner(producer, segment)
        try:
            self._map(segment, producer)
        except (DescriptorError, OSError) as exc:
            log.debug("node %s: pool %s announced by %s/%s not mapped yet: %s", self.node_id,
                      segment, *producer, exc)

    def _not_lent(self, producer: tuple[str, str], ref: SlotRef) -> SlotNotLent:
        """Count and (rate-limited) log a descriptor for a slot lent to others; the error
        to refuse it with. No release goes back: the producer expects none from us."""
        with self._claims:
            self.not_lent += 1
            count, now = self.not_lent, time.monotonic()
            due = now - self._not_lent_logged >= NOT_LENT_LOG_INTERVAL_S
            if due:
                self._not_lent_logged = now
        lent_to = ", ".join(sorted(ref.lent_to)) or "nobody"
        if due:
            log.warning("node %s: skipped a message of %s/%s whose slot was lent to %s, not to "
                        "this node (the producer took it for unreachable: a lost link); %d "
                        "skipped so far", self.node_id, *producer, lent_to, count)
        return SlotNotLent(f"{ref.segment}[{ref.index}] generation {ref.generation} is lent "
                           f"to {lent_to}, not to {self.node_id}; skipped")

    def _check_first_delivery(self, ref: SlotRef | frames.Slot) -> None:
        """Refuse a descriptor for a slot generation already read or given back (caller
        holds ``_claims``): the producer expects one release from us, not two."""
        seen = self._newest.get(ref.segment, {}).get(ref.index, 0)
        if ref.generation <= seen or (ref.segment, ref.index, ref.generation) in self._given_back:
            raise DescriptorError(
                f"repeated descriptor for {ref.segment}[{ref.index}] generation "
                f"{ref.generation} (already read: generation {seen}); dropped"
            )

    def _view_gone(self, watch: weakref.ref[np.ndarray]) -> None:
        """The last view of a received slot is gone: give the slot back. Runs wherever the
        view was collected (any thread, inside any code): nothing here may block."""
        entry = self._watched.pop(id(watch), None)
        if entry is None:
            return
        _, key, give_back, held = entry
        if held:
            self._ledger.put((-1, key))
        give_back(*key)

    def _start_release_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._send_releases, daemon=True,
                        name=f"pinflow-release-{self.node_id}")
                    self._thread.start()

    def held(self) -> list[tuple[str, int, int]]:
        """The ``(segment, index, generation)`` slots some view still holds."""
        with self._held_lock:
            while True:
                try:
                    delta, key = self._ledger.get_nowait()
                except queue.Empty:
                    break
                self._held[key] += delta
                if self._held[key] <= 0:
                    del self._held[key]
            return sorted(self._held)

    def _on_held_query(self, query: zenoh.Query) -> None:
        """A producer asks which of its slots we hold: answer, signed with the key we share
        with it over its nonce, so neither a forger nor a replay can speak for us."""
        try:
            ask = messages.decode_held_query(query.payload.to_bytes() if query.payload else b"")
        except DescriptorError as exc:
            log.warning("ignored a malformed held-slots query: %s", exc)
            return
        mine = [key for key in self.held() if parse_segment_name(key[0]) is not None
                and parse_segment_name(key[0])[1] == ask.producer]
        body = messages.HeldReply(self.node_id, mine).encode()
        signature = self._signer.sign_held(ask.producer, self._keys.held(self.node_id),
                                           ask.nonce, body)
        try:
            query.reply(query.key_expr, body, attachment=signature)
        except Exception as exc:  # the asker went away meanwhile
            log.debug("could not answer a held-slots query: %s", exc)

    def _map(self, name: str, producer: tuple[str, str]) -> Mapping:
        with self._lock:
            mapping = self._mappings.get(name)
            if mapping is not None:
                return mapping
            segment = Segment.open(name, writable=self.writable_mappings)
            try:
                mapping = Mapping(segment, SlotReader(segment), producer)
            except DescriptorError:
                segment.close()
                raise
            # A producer uses one pool at a time: older segments of it are finished with
            # once their views die, so forget them (their memory goes with the last view).
            for old_name, old in list(self._mappings.items()):
                if old.producer == producer:
                    self._forget(old_name)
            self._mappings[name] = mapping
            self.segments_mapped += 1
            for callback in self.on_map:
                try:
                    callback(segment, mapping.pinned)
                except Exception:
                    log.exception("node %s: a callback on mapping %s failed", self.node_id, name)
            return mapping

    def _forget(self, name: str) -> None:
        """Drop a mapping (caller holds the lock); views still alive keep the memory.

        Callback failures (CUDA) are logged, never raised: they must not drop the frame that
        caused a regrowth, nor stop ``close()`` half-way.
        """
        mapping = self._mappings.pop(name)
        mapping.reader.close()
        for callback in self.on_unmap:
            try:
                callback(mapping.segment)
            except Exception:
                log.exception("node %s: a callback before unmapping %s failed", self.node_id,
                              name)
        mapping.segment.close()

    def producer_gone(self, producer_node: str) -> None:
        """The producer exited or died: its segments will not be written again."""
        with self._lock:
            for name, mapping in list(self._mappings.items()):
                if mapping.producer[0] == producer_node:
                    self._forget(name)

    def _publisher(self, node: str, output: str) -> zenoh.Publisher:
        key = (node, output)
        if key not in self._publishers:
            self._publishers[key] = self._session.declare_publisher(
                self._keys.release(node, output, self.node_id),
                congestion_control=zenoh.CongestionControl.BLOCK,
                reliability=zenoh.Reliability.RELIABLE,
            )
        return self._publishers[key]

    def _send_releases(self) -> None:
        """Batch whatever releases are queued into one signed message per segment."""
        running = True
        while running:
            items = [self._pending.get()]
            while True:
                try:
                    items.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            batch: dict[tuple[str, str, str], list[tuple[int, int]]] = (
                collections.defaultdict(list))
            for item in items:
                if item is None:
                    running = False
                    continue
                node, output, seg, index, generation = item
                batch[(node, output, seg)].append((index, generation))
            self.held()  # settles the ledger now and then, so it never grows
            for (node, output, seg), releases in batch.items():
                key = self._keys.release(node, output, self.node_id)
                for start in range(0, len(releases), messages.MAX_RELEASES):
                    body = messages.Release(
                        seg, releases[start:start + messages.MAX_RELEASES]).encode()
                    try:
                        self._publisher(node, output).put(
                            body, attachment=self._signer.sign_release(node, key, body))
                    except Exception as exc:  # session closing: the producer reclaims
                        log.debug("release to %s/%s not sent: %s", node, output, exc)

    def close(self) -> None:
        """Stop the release thread (after sending what is queued) and drop all mappings;
        idempotent."""
        queryable, self._queryable = self._queryable, None
        if queryable is not None:
            queryable.undeclare()
        if self._thread is not None:
            self._pending.put(None)
            self._thread.join(timeout=2.0)
        with self._lock:
            for name in list(self._mappings):
                self._forget(name)
        for publisher in self._publishers.values():
            publisher.undeclare()
        self._publishers.clear()
