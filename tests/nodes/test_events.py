"""Events over received bytes, built through ``payload_event`` as a node builds them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from pinflow.nodes import events
from pinflow.transport import codec


def _received(data: Any) -> tuple[Any, np.ndarray]:
    encoded = codec.encode(data)
    holder = np.frombuffer(encoded.data, dtype=np.uint8).copy()
    holder.flags.writeable = False
    return encoded.layout, holder


def test_a_payload_event_views_the_received_bytes_in_the_sender_s_shape() -> None:
    sent = np.arange(12, dtype=np.float32).reshape(3, 4)
    layout, holder = _received(sent)
    copies: list[tuple[str, Any]] = []
    event = events.payload_event("image", layout, holder, metadata={"frame": 3}, seq=7,
                                 sent_ns=11, pinned=True, device=None,
                                 to_device=lambda target, stream: copies.append((target, stream)))
    assert (event["type"], event["id"], event["seq"], event["sent_ns"]) == ("INPUT", "image",
                                                                             7, 11)
    assert event["metadata"] == {"frame": 3} and event["pinned"] and event["device"] == "cpu"
    array = event.to_numpy()
    np.testing.assert_array_equal(array, sent)
    assert np.shares_memory(array, holder), "zero-copy over the received bytes"
    assert event["value"].type == pa.float32() and len(event["value"]) == 12
    assert copies == [], "no device copy unless asked"
    event.to_torch("cuda:1", stream="s")
    assert copies == [("cuda:1", "s")]
    event.release()
    with pytest.raises(ValueError, match="released"):
        event.to_numpy()
    np.testing.assert_array_equal(array, sent)  # views taken before stay valid


class _Tensor:
    def __init__(self, device: str, stream: Any) -> None:
        self.device, self.stream = device, stream


def test_an_input_with_a_device_gets_its_copy_when_the_event_is_built() -> None:
    layout, holder = _received(np.ones(4, dtype=np.uint8))
    made: list[_Tensor] = []

    def to_device(target: str, stream: Any) -> _Tensor:
        made.append(_Tensor(target, stream))
        return made[-1]

    event = events.payload_event("image", layout, holder, metadata={}, seq=0, sent_ns=0,
                                 pinned=False, device="cuda:0", to_device=to_device)
    assert event["device"] == "cuda:0" and len(made) == 1
    assert event.to_torch() is made[0] and made[0].stream is None
    assert event.to_torch("cuda") is made[0], "cuda is device 0: no second copy"
    assert event.to_torch("cuda:1", stream="s") is made[1] and made[1].stream == "s"


def test_arrow_payloads_come_back_as_the_array_that_was_sent() -> None:
    sent = pa.array(["a", None, "bc"])
    layout, holder = _received(sent)
    event = events.payload_event("names", layout, holder, metadata={}, seq=0, sent_ns=0,
                                 pinned=False, device=None, to_device=lambda *_: None)
    assert event["value"].equals(sent)
    assert list(event.to_numpy()) == ["a", None, "bc"]
