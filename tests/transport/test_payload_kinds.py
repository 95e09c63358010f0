"""Every kind of payload a sender accepts crosses a real slot intact: a channel, a pool, a
same-host link and a consumer's checks, in one process (``pinflow.testing.rig``)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pinflow.testing import StandinCuda
from pinflow.testing.rig import make_rig
from pinflow.transport import codec
from pinflow.transport.inbound import Incoming


def _next_message(inbound, timeout: float = 5.0) -> Incoming:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = [i for i in inbound.receive() if i.holder is not None]
        if got:
            assert len(got) == 1
            return got[0]
        inbound.wait(0.1)
    raise TimeoutError("no message")


@pytest.mark.parametrize("data", [
    pa.array(["a string"] * 2000), pa.array([{"x": 1, "y": "z"}] * 500),
    pa.array([1.5, None] * 1000), pa.array(np.arange(2048, dtype=np.int64)),
    np.arange(4096, dtype=np.float32).reshape(64, 64), bytes(range(256)) * 32,
    np.arange(8192, dtype=np.uint16)[::2],
], ids=["strings", "structs", "nullable", "int64", "tensor", "bytes", "strided"])
def test_a_payload_larger_than_the_inline_limit_crosses_a_slot_intact(tmp_path: Path,
                                                                      data: object) -> None:
    runtime = StandinCuda()
    try:
        with make_rig(tmp_path, runtime) as rig:
            encoded = codec.encode(data)
            assert encoded.nbytes >= rig.channel.options.shm_threshold, "not inline"
            assert rig.channel.send(encoded, {"frame": 7})
            incoming = _next_message(rig.inbound)
            assert incoming.metadata == {"frame": 7}
            value = codec.decode_value(incoming.layout, incoming.holder)
            if isinstance(data, pa.Array):
                assert value.equals(data)
            elif isinstance(data, bytes):
                assert incoming.holder.tobytes() == data
            else:
                np.testing.assert_array_equal(
                    codec.decode_numpy(incoming.layout, incoming.holder, value), data)
            assert rig.malformed.count == 0
    finally:
        runtime.close()
        runtime.check()
