"""Events a node receives, and the bounded per-input queues they wait in.

An :class:`Event` is a ``dict`` with dora's keys (``kind``, ``type``, ``id``, and for INPUT
``value`` and ``metadata``) so dora nodes port with one changed import, plus helpers to get
the payload back in the sender's shape: ``to_numpy()``, ``to_torch()``, ``to_bytes()``.
"""

from __future__ import annotations

import collections
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pinflow.protocol.messages import Layout, TensorLayout
from pinflow.transport import codec

INPUT = "INPUT"
INPUT_CLOSED = "INPUT_CLOSED"
STOP = "STOP"
ERROR = "ERROR"
ALL_INPUTS_CLOSED = "ALL_INPUTS_CLOSED"
"""The id of the STOP that follows the last INPUT_CLOSED (dora's name)."""
KIND = "dora"
"""Every event's ``kind``: dora tells its own events from merged external ones by it."""
QUARTER_NS = 250_000_000
"""Queue fill is judged per quarter of a second, at its fullest (``InputQueue.peak``)."""


class Event(dict):
    """One event; payload helpers keep the received memory alive while any view exists.

    Keys: ``kind`` (always ``"dora"``), ``type`` (INPUT, INPUT_CLOSED, STOP, ERROR), ``id``
    (input name, or the reason of a STOP); INPUT events also carry ``value`` (a
    ``pyarrow.Array``, flat for tensors: ``to_numpy()`` restores dtype and shape),
    ``metadata`` (the sender's dict plus ``timestamp``), ``seq`` (sender's sequence
    number), ``sent_ns`` (sender's wall clock at send, for latency), ``pinned`` (the payload
    sits in a pinned pool: a GPU consumer DMAs it directly) and ``device`` (where
    ``to_torch()`` delivers: ``cpu`` or the input's CUDA device).
    """

    _layout: Layout | None = None
    _holder: np.ndarray | None = None
    _device_tensor: Any = None
    _to_device: Callable[[str, Any], Any] | None = None
    _unbuilt_value = False
    """``value`` is made on first use: building a pyarrow array costs more than the rest of
    a delivery, and ``to_numpy()``/``to_torch()`` do not need one. The dict behaves as if it
    held it all along (every way of reading the dict builds it first)."""

    def _build_value(self) -> Any:
        self._unbuilt_value = False
        value = codec.decode_value(self._layout, self._holder)  # type: ignore[arg-type]
        dict.__setitem__(self, "value", value)
        return value

    def __missing__(self, key: str) -> Any:
        if key == "value" and self._unbuilt_value:
            return self._build_value()
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        if key == "value" and self._unbuilt_value:
            return self._build_value()
        return dict.get(self, key, default)

    def __contains__(self, key: object) -> bool:
        return (key == "value" and self._unbuilt_value) or dict.__contains__(self, key)

    def to_numpy(self) -> np.ndarray:
        """A numpy array with the sender's dtype and shape (zero-copy for tensors and bytes)."""
        if self._layout is None or self._holder is None:
            raise ValueError(f"{self.get('type')} event has no payload (or it was released)")
        if self._unbuilt_value:
            return codec.tensor_view(self._layout, self._holder)
        return codec.decode_numpy(self._layout, self._holder, self["value"])

    def to_bytes(self) -> bytes:
        """The payload bytes (a copy)."""
        return self.to_numpy().tobytes()

    def to_torch(self, device: str | None = None, stream: Any = None) -> Any:
        """The payload as a ``torch.Tensor`` (needs ``pinflow[torch]``).

        ``device=None``: where the input delivers (its YAML ``device``), else a CPU tensor
        sharing the received memory. ``device="cuda"``/``"cuda:N"``: a device tensor; from a
        pinned slot that is one DMA with no staging copy. The tensor is ordered after its
        copy on ``stream`` (default: the current stream; for a ``device:`` input, the one
        current when the event was taken) and its memory is protected there
        (``record_stream``): use it on that stream without syncing, and drop it whenever.
        Raises ``CudaUnavailable`` (with the reason) if CUDA cannot be used here.
        """
        tensor = self._device_tensor
        if tensor is not None and (device is None or _same_device(str(tensor.device), device)):
            return tensor
        if device is not None and device != "cpu":
            if self._to_device is None:
                raise ValueError(f"{self.get('type')} event has no payload to copy")
            return self._to_device(device, stream)
        try:
            import torch
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "event.to_torch() needs torch: pip install 'pinflow[torch]'"
            ) from None
        array = self.to_numpy()
        with warnings.catch_warnings():
            # Received memory is read-only by contract; torch only warns that it cannot
            # enforce that. Writing into the tensor is undefined behaviour.
            warnings.filterwarnings("ignore", message=".*not writable.*")
            return torch.from_numpy(array)

    def release(self) -> None:
        """Drop this event's references to the payload now instead of at garbage collection.

        Views you took before (numpy arrays, tensors) stay valid: the memory is handed back to
        the producer only once the last of them is gone too.
        """
        unbuilt, self._unbuilt_value = self._unbuilt_value, False
        self._layout = None
        self._holder = None
        self._device_tensor = None
        if unbuilt or "value" in self:
            self["value"] = None

    def __enter__(self) -> Event:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _building_value_first(name: str) -> Any:
    """``dict.<name>`` for an Event, with ``value`` built first if it is not yet."""
    method = getattr(dict, name)

    def with_value(self: Event, *args: Any, **kwargs: Any) -> Any:
        if self._unbuilt_value:
            self._build_value()
        return method(self, *args, **kwargs)

    with_value.__name__ = with_value.__qualname__ = name
    with_value.__doc__ = method.__doc__
    return with_value


for _name in ("__iter__", "__len__", "__reversed__", "__repr__", "__eq__", "__ne__", "__or__",
              "__ror__", "__ior__", "__setitem__", "__delitem__", "__reduce_ex__", "keys",
              "values", "items", "copy", "pop", "popitem", "setdefault", "update", "clear"):
    setattr(Event, _name, _building_value_first(_name))


def _same_device(have: str, want: str) -> bool:
    return have == want or (want == "cuda" and have == "cuda:0")


def make_event(kind: str, event_id: str, **extra: Any) -> Event:
    """An event with ``extra`` keys; STOP and INPUT_CLOSED have no ``value`` or ``metadata``
    (as in dora: reading them is a KeyError, not a silent None)."""
    event = Event(kind=KIND, type=kind, id=event_id)
    event.update(extra)
    return event


def payload_event(name: str, layout: Layout, holder: np.ndarray, *, metadata: dict[str, Any],
                  seq: int, sent_ns: int, pinned: bool, device: str | None,
                  to_device: Callable[[str, Any], Any]) -> Event:
    """An INPUT event over received bytes: ``holder`` (a 1-D uint8 view of the slot or of
    the inline payload) and everything built from it keep the memory alive.

    ``to_device(target, stream)`` copies the payload to a CUDA device; for an input with a
    ``device`` that copy is made now, on the stream current while the event is taken.
    """
    if type(layout) is TensorLayout:
        event = Event(kind=KIND, type=INPUT, id=name, metadata=metadata, seq=seq,
                      sent_ns=sent_ns, pinned=pinned, device=device or "cpu")
        event._unbuilt_value = True  # ``value`` is made on first use
    else:
        event = Event(kind=KIND, type=INPUT, id=name, value=codec.decode_value(layout, holder),
                      metadata=metadata, seq=seq, sent_ns=sent_ns, pinned=pinned,
                      device=device or "cpu")
    event._layout, event._holder, event._to_device = layout, holder, to_device
    if device is not None:
        event._device_tensor = to_device(device, None)
    return event


Pending = tuple[int, Callable[[str], "Event"], str]
"""A received message waiting in an input queue: ``(arrival, build, input name)``; it is
decoded only when delivered (``build(name)``), and dropping it (overflow, STOP) drops what it
holds, so its slot goes back."""


@dataclass
class InputQueue:
    """Bounded queue of one input; overflow drops by policy and is counted, never silent."""

    name: str
    size: int
    policy: str = "drop_oldest"
    items: collections.deque[Pending] = field(default_factory=collections.deque)
    received: int = 0
    dropped: int = 0
    delivered: int = 0
    closed: bool = False       # no more messages will be queued
    close_queued: bool = False  # INPUT_CLOSED is waiting behind the queued messages
    close_delivered: bool = False
    peak: int = 0
    """The most items queued in the current quarter of a second: messages are queued when
    the node's thread reads its links, in ``next()``, so between two reads the queue only
    shrinks; its fill is judged at its highest."""
    quarter: int = field(default_factory=lambda: time.monotonic_ns() // QUARTER_NS)
    """The quarter of a second ``peak`` is about (monotonic ns // ``QUARTER_NS``)."""
    fill_sum: int = 0
    """Sum of the peaks of the quarters closed since :meth:`take_occupancy` last looked."""
    fill_quarters: int = 0

    def _roll(self) -> None:
        """Close the quarters that ended before now, before the queue changes: each had the
        fill ``peak`` (the current one) or, if nothing happened in it, the queue's length."""
        now = time.monotonic_ns() // QUARTER_NS
        if now > self.quarter:
            idle = now - self.quarter - 1
            self.fill_sum += self.peak + idle * len(self.items)
            self.fill_quarters += 1 + idle
            self.quarter, self.peak = now, len(self.items)

    def push(self, item: Pending) -> None:
        """Queue ``item`` (caller holds the node's lock); a dropped one is simply let go."""
        if self.closed:
            return
        self._roll()
        self.received += 1
        if len(self.items) >= self.size:
            self.dropped += 1
            if self.policy == "drop_newest":
                return
            self.items.popleft()
        self.items.append(item)
        if len(self.items) > self.peak:
            self.peak = len(self.items)

    def pop(self) -> Pending:
        """The oldest item, delivered (caller holds the node's lock)."""
        self._roll()
        self.delivered += 1
        return self.items.popleft()

    def take_occupancy(self) -> float:
        """The mean fill (0..1) since the last call, each quarter of a second counted at its
        fullest (the current, unfinished quarter too)."""
        self._roll()
        total, quarters = self.fill_sum + self.peak, self.fill_quarters + 1
        self.fill_sum = self.fill_quarters = 0
        self.peak = len(self.items)
        return total / quarters / self.size

    def push_run(self, count: int, item: Callable[[int], Pending]) -> None:
        """Queue ``count`` arrivals at once, ``item(i)`` making the i-th (from 0): the queue
        and its counters end up as if each had been pushed in turn, but the ones the policy
        would drop anyway are never made (a timer's ticks that came due while the node was
        busy: there may be many)."""
        if self.closed or count <= 0:
            return
        keep = min(count, self.size)
        skipped = count - keep
        self.received += skipped
        self.dropped += skipped
        # drop_newest keeps what came first; the other policies what came last.
        start = 0 if self.policy == "drop_newest" else skipped
        for i in range(start, start + keep):
            self.push(item(i))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.close_queued = True

    def drain(self) -> None:
        self._roll()
        self.items.clear()


_EMPTY = pa.nulls(0)


def timer_value() -> pa.Array:
    """Value of a timer event: an empty array, as dora's; the tick time is in the metadata's
    ``timestamp`` and, in ns, in ``sent_ns``. One array for every tick (Arrow arrays are
    immutable): a pyarrow call per tick would cost more than the rest of the tick."""
    return _EMPTY
