"""Consumer side of shared memory: map each producer segment once, verify every descriptor,
and send slots back when the last view of a received value is gone.

A received payload is a read-only numpy array directly over the slot; everything built on
it (the pyarrow value, ``to_numpy()`` views, torch tensors) keeps that array alive. A
finalizer on it queues the release; a small thread sends releases to the producer in
batches, so finalizers (which may run on any thread, at any time) never touch zenoh.

The producer counts one release per consumer per published slot, so a consumer reads each
``(segment, slot, generation)`` at most once: a repeated or replayed descriptor is refused,
never a second view the producer does not know about. Releases go out on this consumer's
own key, signed with the key it shares with the producer (``transport/auth.py``).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import zenoh

from pinflow.errors import ClosedError, DescriptorError
from pinflow.transport import message
from pinflow.transport.auth import ConsumerKeys
from pinflow.transport.keys import RunKeys
from pinflow.transport.pool import SlotReader, SlotRef
from pinflow.transport.segment import PINNED_SUFFIX, Segment, parse_segment_name

log = logging.getLogger("pinflow.transport")


@dataclass
class Mapping:
    """One producer segment mapped in this process."""

    segment: Segment
    reader: SlotReader
    producer: tuple[str, str]

    @property
    def pinned(self) -> bool:
        """The producer made this pool for DMA (``pinned=True``)."""
        return self.segment.name.endswith(PINNED_SUFFIX)


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
        self._publishers: dict[tuple[str, str], zenoh.Publisher] = {}
        self._pending: queue.SimpleQueue[tuple[str, str, str, int, int] | None] = (
            queue.SimpleQueue()
        )
        self.segments_mapped = 0
        """Segments this node has mapped so far (one per producer pool, never per message)."""
        self.on_map: list[Callable[[Segment, bool], None]] = []
        """Callbacks ``f(segment, pinned)`` run once a segment is mapped (CUDA starts
        registering it here, on its own thread); they must not block."""
        self.on_unmap: list[Callable[[Segment], None]] = []
        """Callbacks ``f(segment)`` run before a mapping is dropped (CUDA unregisters here)."""
        self._thread = threading.Thread(target=self._send_releases, daemon=True,
                                        name=f"pinflow-release-{node_id}")
        self._thread.start()

    def mapping(self, name: str) -> Mapping | None:
        with self._lock:
            return self._mappings.get(name)

    def mappings(self) -> list[Mapping]:
        with self._lock:
            return list(self._mappings.values())

    def read(self, producer: tuple[str, str], slot: object) -> tuple[np.ndarray, Mapping]:
        """Verify ``slot`` (a descriptor dict from ``producer`` = (node, output)) and return a
        read-only view of its bytes whose collection releases the slot."""
        ref = SlotRef.from_dict(slot)
        parsed = parse_segment_name(ref.segment)
        expected = (self._keys.run_id, *producer)
        if parsed is None or parsed[:3] != expected:
            raise DescriptorError(
                f"segment {ref.segment!r} does not belong to {producer[0]}/{producer[1]} of "
                f"run {self._keys.run_id}; refused"
            )
        release = (producer[0], producer[1], ref.segment, ref.index, ref.generation)
        with self._claims:
            self._check_first_delivery(ref)
        try:
            mapping = self._map(ref.segment, producer)
            mapping.segment.buffer  # noqa: B018 (ClosedError if forgotten meanwhile)
        except (DescriptorError, OSError, ClosedError) as exc:
            # Refused for a reason of ours (the segment is gone, cannot be mapped), not of
            # the descriptor: give the slot back, or the producer would lose it for good. A
            # release drops only this consumer from the slot, so a forged descriptor can
            # make it free nothing that another consumer holds.
            with self._claims:
                self._given_back[release[2:]] = None
                while len(self._given_back) > self._REMEMBERED_REFUSALS:
                    self._given_back.popitem(last=False)
            self._pending.put(release)
            raise DescriptorError(f"{exc}; slot {ref.index} handed back") from None
        mapping.reader.read(ref)  # checks index, offset, length and generation
        view = np.frombuffer(mapping.segment.buffer, dtype=np.uint8, count=ref.length,
                             offset=ref.offset)
        view.flags.writeable = False
        with self._claims:
            self._check_first_delivery(ref)  # a copy of it may have been read meanwhile
            newest = self._newest.setdefault(ref.segment, {})
            self._newest.move_to_end(ref.segment)
            newest[ref.index] = ref.generation
            while len(self._newest) > self._REMEMBERED_SEGMENTS:
                self._newest.popitem(last=False)
        weakref.finalize(view, self._pending.put, release)
        return view, mapping

    def _check_first_delivery(self, ref: SlotRef) -> None:
        """Refuse a descriptor for a slot generation already read or given back (caller
        holds ``_claims``): the producer expects one release from us, not two."""
        seen = self._newest.get(ref.segment, {}).get(ref.index, 0)
        if ref.generation <= seen or (ref.segment, ref.index, ref.generation) in self._given_back:
            raise DescriptorError(
                f"repeated descriptor for {ref.segment}[{ref.index}] generation "
                f"{ref.generation} (already read: generation {seen}); dropped"
            )

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
            for (node, output, seg), releases in batch.items():
                key = self._keys.release(node, output, self.node_id)
                for start in range(0, len(releases), message.MAX_RELEASES):
                    body = message.Release(
                        seg, releases[start:start + message.MAX_RELEASES]).encode()
                    try:
                        self._publisher(node, output).put(
                            body, attachment=self._signer.sign_release(node, key, body))
                    except Exception as exc:  # session closing: the producer reclaims
                        log.debug("release to %s/%s not sent: %s", node, output, exc)

    def close(self) -> None:
        """Stop the release thread (after sending what is queued) and drop all mappings."""
        self._pending.put(None)
        self._thread.join(timeout=2.0)
        with self._lock:
            for name in list(self._mappings):
                self._forget(name)
        for publisher in self._publishers.values():
            publisher.undeclare()
        self._publishers.clear()
