"""dora's metadata values (numpy scalars, bytes, datetimes) go through the JSON header and
come back as what was sent; anything else is sent as its string, with a warning."""

from __future__ import annotations

import datetime as dt
import enum
import math

import numpy as np
import pytest

from pinflow.errors import PayloadError
from pinflow.nodes import metadata
from pinflow.protocol import messages

WHEN = dt.datetime(2024, 5, 17, 12, 30, 15, 123456, tzinfo=dt.timezone.utc)


class Mode(enum.IntEnum):
    FAST = 2


def _round_trip(sent: dict, warnings: list | None = None) -> dict:
    """Through the sender's conversion, the header's JSON check and codec, and delivery."""
    said = [] if warnings is None else warnings
    wire = metadata.to_wire(sent, lambda key, text: said.append((key, text)))
    messages.check_metadata(wire)
    header = messages.Header.new("inline", 0, 1_700_000_000_000_000_000,
                                 layout=messages.TensorLayout(dt="|u1", sh=[0]), metadata=wire)
    received = messages.decode(header.encode())
    return metadata.from_wire(received.metadata, received.sent_ns)


def test_numpy_scalars_bytes_datetimes_and_tuples_arrive_as_python_values() -> None:
    """Before: each of these raised PayloadError in send_output (a dora node that put
    np.int64 in its metadata crashed)."""
    naive = WHEN.astimezone().replace(tzinfo=None)  # local time, as dora reads it
    got = _round_trip({"i64": np.int64(5), "f32": np.float32(1.5), "flag": np.bool_(True),
                       "raw": b"ab", "buf": bytearray(b"\x00\xff"), "aware": WHEN,
                       "naive": naive, "pair": (1, 2), "nested": {"when": [WHEN]},
                       "nan": float("nan"), "inf": np.float64("inf"), "mode": Mode.FAST,
                       "array": np.arange(3, dtype=np.uint16), "none": None, "empty": []})
    assert got["i64"] == 5 and type(got["i64"]) is int
    assert got["f32"] == 1.5 and type(got["f32"]) is float
    assert got["flag"] is True
    assert got["raw"] == b"ab" and got["buf"] == b"\x00\xff"
    assert got["aware"] == WHEN and got["aware"].tzinfo is dt.timezone.utc
    assert got["naive"] == WHEN
    assert got["pair"] == [1, 2] and got["nested"] == {"when": [WHEN]}
    assert math.isnan(got["nan"]) and got["inf"] == math.inf
    assert got["mode"] == 2 and type(got["mode"]) is int
    assert got["array"] == [0, 1, 2] and got["none"] is None and got["empty"] == []


def test_every_delivered_input_has_a_timestamp_and_a_sender_s_own_wins() -> None:
    got = _round_trip({"k": 1})
    assert list(got) == ["timestamp", "k"]
    assert got["timestamp"] == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc)
    forwarded = _round_trip(got)  # an echo node forwards the metadata it received
    assert forwarded["timestamp"] == got["timestamp"]
    assert _round_trip({"timestamp": WHEN})["timestamp"] == WHEN


def test_unknown_types_are_sent_as_their_string_with_one_warning_each() -> None:
    warnings: list = []
    got = _round_trip({"odd": {1, 2}, "obj": Mode, "fine": 1}, warnings)
    assert got["odd"] == "{1, 2}" and got["obj"] == str(Mode)
    assert [key for key, _ in warnings] == ["odd", "obj"]
    assert "unsupported metadata value type set for key 'odd'" in warnings[0][1]


def test_what_cannot_travel_is_still_refused_with_the_reason() -> None:
    deep: dict = {}
    for _ in range(5000):
        deep = {"d": deep}
    for bad, reason in (({1: "a"}, "keys must be strings"), ({"x": 2**64}, "64 bits"),
                        (deep, "nested deeper than 32 levels")):
        with pytest.raises(PayloadError, match=reason):
            messages.check_metadata(metadata.to_wire(bad, lambda *_: None))
    assert metadata.to_wire(None, lambda *_: None) is None
    with pytest.raises(PayloadError, match="must be a dict"):
        messages.check_metadata(metadata.to_wire([1], lambda *_: None))


def test_a_tag_lookalike_of_the_wrong_type_stays_a_dict() -> None:
    odd = {metadata.DATETIME_TAG: "not a number"}
    assert _round_trip({"x": odd})["x"] == odd
