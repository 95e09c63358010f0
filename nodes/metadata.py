"""Metadata values dora nodes put in ``send_output``, made JSON for the header and back.

A message header carries metadata as JSON (``pinflow.protocol.messages.check_metadata``
says what JSON can carry). dora nodes also send numpy scalars, ``bytes`` and datetimes, and
forward the metadata they received, whose ``timestamp`` is a datetime. :func:`to_wire` turns
those into JSON values before the check, :func:`from_wire` turns them back on delivery:

- numpy scalars become the Python number or bool (``.item()``), numpy arrays lists;
- ``datetime`` travels as microseconds since the epoch and arrives as an aware UTC
  datetime (a naive one is local time, as dora reads it);
- ``bytes``/``bytearray``/``memoryview`` and non-finite floats travel tagged and arrive as
  ``bytes`` and ``float``;
- tuples arrive as lists; anything else is sent as ``str(value)`` with one warning per key
  (dora's rule for the types it does not know).

Tagged values are one-key dicts (:data:`TAGS`); a dict of the user's that happens to have
exactly such a key and value type would be read back as the tagged value.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import sys
from collections.abc import Callable
from typing import Any

from pinflow.protocol.messages import MAX_METADATA_DEPTH

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
DATETIME_TAG = "__pinflow_datetime_us__"
BYTES_TAG = "__pinflow_bytes_b64__"
FLOAT_TAG = "__pinflow_float__"
TAGS = (DATETIME_TAG, BYTES_TAG, FLOAT_TAG)
TIMESTAMP = "timestamp"
"""The metadata key every delivered INPUT carries: when it was sent (dora's key)."""


def utc_from_ns(ns: int) -> dt.datetime:
    """An aware UTC datetime (microsecond resolution) from ns since the epoch."""
    return EPOCH + dt.timedelta(microseconds=ns // 1000)


def _datetime_us(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.astimezone()  # naive: local time
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def to_wire(metadata: Any, warn: Callable[[str, str], None]) -> Any:
    """``metadata`` with every value JSON can carry; ``warn(key, text)`` for each value sent
    as its string. Not a dict (or None): returned as is, for ``check_metadata`` to refuse."""
    if not isinstance(metadata, dict):
        return metadata
    return {key: _value(item, key, warn, 2) for key, item in metadata.items()}


def _value(value: Any, key: Any, warn: Callable[[str, str], None], depth: int) -> Any:
    if depth > MAX_METADATA_DEPTH:
        return value  # as it is: check_metadata refuses the nesting with its own message
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)  # IntEnum and friends: the number
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {FLOAT_TAG: repr(float(value))}
    if isinstance(value, dict):
        return {k: _value(v, key, warn, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_value(v, key, warn, depth + 1) for v in value]
    if isinstance(value, dt.datetime):
        return {DATETIME_TAG: _datetime_us(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {BYTES_TAG: base64.b64encode(bytes(value)).decode("ascii")}
    numpy = sys.modules.get("numpy")  # a numpy value means numpy is imported already
    if numpy is not None and isinstance(value, numpy.generic):
        return _value(value.item(), key, warn, depth)
    if numpy is not None and isinstance(value, numpy.ndarray):
        return _value(value.tolist(), key, warn, depth)
    text = str(value)
    warn(str(key), f"unsupported metadata value type {type(value).__name__} for key "
         f"{key!r}; sending its string representation: {text[:80]}")
    return text


def from_wire(metadata: dict[str, Any], sent_ns: int) -> dict[str, Any]:
    """The metadata a node delivers: ``timestamp`` (the send time) first, then the sender's
    keys with tagged values restored (a sender's own ``timestamp`` wins, as in dora).
    Received metadata is at most ``MAX_METADATA_DEPTH`` deep (``messages.decode``)."""
    for value in metadata.values():
        if type(value) in (dict, list):  # something tagged may be inside: restore it
            metadata = {key: _restore(item, 2) for key, item in metadata.items()}
            break
    return {TIMESTAMP: utc_from_ns(sent_ns), **metadata}


def _restore(value: Any, depth: int) -> Any:
    if depth > MAX_METADATA_DEPTH:
        return value
    if isinstance(value, list):
        return [_restore(v, depth + 1) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, inner), = value.items()
        if tag == DATETIME_TAG and isinstance(inner, int) and not isinstance(inner, bool):
            try:
                return EPOCH + dt.timedelta(microseconds=inner)
            except OverflowError:
                return value
        if tag == BYTES_TAG and isinstance(inner, str):
            try:
                return base64.b64decode(inner, validate=True)
            except ValueError:
                return value
        if tag == FLOAT_TAG and inner in ("nan", "inf", "-inf"):
            return float(inner)
    return {k: _restore(v, depth + 1) for k, v in value.items()}
